"""The OpenAPI 3.1 description of the relay's own API (served at ``/openapi.json``).

Request schemas state only what the relay itself enforces (a JSON object with a non-empty string
``model``, an optional boolean ``stream``); everything else is the upstream's business and is
passed through, so it is described but not constrained.
"""

from __future__ import annotations

from typing import Any

from chatprovider.domain.apis import Api, Operation
from chatprovider.domain.routing import PROVIDER_HEADER
from chatprovider.settings import AuthMode, RelaySettings

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/responses/Error"}
_ANTHROPIC_ERROR = {"$ref": "#/components/responses/AnthropicError"}
#: What routing.parse_pin accepts: a namespace (DNS label) and a name (DNS subdomain).
_PIN_PATTERN = (r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/"
                r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_FORWARD_ERRORS = ("400", "401", "403", "404", "413", "415", "429", "500", "502", "503", "504")


_STREAMS = {
    Operation.CHAT: "Server-sent events, ending with `data: [DONE]`; an error after the stream "
                    "started is sent as `data: {\"error\": {...}}` without it.",
    Operation.COMPLETIONS: "As chat completions.",
    Operation.RESPONSES: "The upstream's Responses events (`event: response.created` ... "
                         "`response.completed`), passed through; an error after the stream "
                         "started is sent as `event: error` with `{\"type\": \"error\", "
                         "\"error\": {...}}`.",
    Operation.MESSAGES: "The upstream's Anthropic events (`message_start` ... `message_stop`), "
                        "passed through; an error after the stream started is sent as "
                        "`event: error` with Anthropic's error envelope.",
}


def _errors(*codes: str, error: dict[str, str] = _ERROR) -> dict[str, Any]:
    return {code: error for code in codes}


def _forward(operation: Operation, summary: str, description: str) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    error = _ANTHROPIC_ERROR if operation.api is Api.ANTHROPIC else _ERROR
    if operation.streams:
        content["text/event-stream"] = {"schema": {"type": "string"},
                                        "description": _STREAMS[operation]}
    return {
        "post": {
            "summary": summary,
            "description": description,
            "parameters": [{"$ref": "#/components/parameters/ProviderPin"}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/ForwardedRequest"}}},
            },
            "responses": {"200": {"description": "The provider's answer, passed through.",
                                  "content": content},
                          **_errors(*_FORWARD_ERRORS, error=error),
                          # an upstream's own error status (such as 422) is passed through
                          "default": error},
        }
    }


def _simple(summary: str, content_type: str, schema: dict[str, Any],
            *errors: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "security": [],
                    "responses": {"200": {"description": "OK", "content": {
                        content_type: {"schema": schema}}}, **_errors(*errors)}}}


def openapi_document(settings: RelaySettings) -> dict[str, Any]:
    """The document; the security requirement depends on the auth mode."""
    security: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
    if settings.auth_mode is AuthMode.NONE:
        security = []
    model_id = {"type": "string", "minLength": 1,
                "description": "A qualified id `<namespace>/<provider>/<model>` as listed by "
                               "GET /v1/models, or a bare upstream id offered by exactly one "
                               "provider you may use."}
    return {
        "openapi": "3.1.0",
        "info": {"title": "chatprovider relay", "version": "v1",
                 "description": "OpenAI-compatible relay to the ChatProviders of a Kubernetes "
                                "cluster. See docs/relay.md for the routing contract."},
        "security": security,
        "paths": {
            "/v1/models": {"get": {
                "summary": "Models of the Ready providers you may use (served from memory).",
                "responses": {"200": {"description": "OK", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ModelList"}}}},
                    **_errors("401", "500", "503")},
            }},
            "/v1/models/{model}": {"get": {
                "summary": "One model, by qualified or bare id.",
                "parameters": [{"name": "model", "in": "path", "required": True,
                                "schema": model_id}],
                "responses": {"200": {"description": "OK", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Model"}}}},
                    **_errors("400", "401", "403", "404", "500", "503")},
            }},
            "/v1/chat/completions": _forward(
                Operation.CHAT, "Chat completion, streamed (SSE) or not.",
                "The body is forwarded byte for byte except `model`, rewritten to the upstream "
                "id."),
            "/v1/completions": _forward(Operation.COMPLETIONS,
                                        "Legacy text completion, passed through.",
                                        "Routed like chat completions."),
            "/v1/embeddings": _forward(Operation.EMBEDDINGS, "Embeddings, passed through.",
                                       "Routed like chat completions."),
            "/v1/responses": _forward(
                Operation.RESPONSES, "OpenAI Responses, streamed (SSE) or not, passed through.",
                "Routed like chat completions. A call with `previous_response_id` must reach "
                "the provider that made that response: use its qualified id (or the "
                "X-ChatProvider header); with a bare id it reaches it only when this relay "
                "replica relayed that response."),
            "/v1/messages": _forward(
                Operation.MESSAGES, "Anthropic Messages, streamed (SSE) or not, passed through.",
                "Routed like chat completions; errors in Anthropic's envelope."),
            "/v1/messages/count_tokens": _forward(
                Operation.COUNT_TOKENS, "Anthropic token count, passed through.",
                "Routed like chat completions; errors in Anthropic's envelope."),
            "/healthz": _simple("Liveness.", "application/json", {"type": "object"}),
            "/readyz": _simple("Readiness (503 while starting or draining).",
                               "application/json", {"type": "object"}, "503"),
            "/metrics": _simple("Prometheus metrics.", "text/plain", {"type": "string"}),
            "/openapi.json": _simple("This document.", "application/json", {"type": "object"}),
        },
        "components": {
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "A Kubernetes token (such as a ServiceAccount token); the caller "
                               "needs `use` on the chatproviders it calls."},
                "apiKey": {
                    "type": "apiKey", "in": "header", "name": "x-api-key",
                    "description": "The same token in `x-api-key` (where the Anthropic SDKs "
                                   "send it); read only when there is no Authorization "
                                   "header."}},
            "parameters": {"ProviderPin": {
                "name": PROVIDER_HEADER, "in": "header", "required": False,
                "description": "Pin a provider: `<namespace>/<name>`.",
                "schema": {"type": "string", "pattern": _PIN_PATTERN}}},
            "responses": {
                "Error": {
                    "description": "An error in the OpenAI envelope.",
                    "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/Error"}}}},
                "AnthropicError": {
                    "description": "An error in Anthropic's envelope (the relay's own; an "
                                   "upstream's error answer is passed through as it is).",
                    "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/AnthropicError"}}}},
            },
            "schemas": {
                "ForwardedRequest": {
                    "type": "object", "required": ["model"], "additionalProperties": True,
                    "properties": {
                        "model": model_id,
                        "stream": {"type": ["boolean", "null"]},
                        "messages": {"type": "array", "description": "Passed through."},
                    },
                },
                "Model": {
                    "type": "object", "required": ["id", "object", "created", "owned_by"],
                    "properties": {
                        "id": {"type": "string"}, "object": {"const": "model"},
                        "created": {"type": "integer"}, "owned_by": {"type": "string"},
                        "upstream_id": {"type": "string"},
                    },
                },
                "ModelList": {
                    "type": "object", "required": ["object", "data"],
                    "properties": {"object": {"const": "list"}, "data": {
                        "type": "array", "items": {"$ref": "#/components/schemas/Model"}}},
                },
                "AnthropicError": {
                    "type": "object", "required": ["error"],
                    "properties": {"type": {"type": "string"}, "error": {
                        "type": "object", "required": ["message"],
                        "properties": {"type": {"type": "string"},
                                       "message": {"type": "string"}},
                    }},
                },
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": {"error": {
                        "type": "object", "required": ["message"],
                        "properties": {
                            "message": {"type": "string"},
                            "type": {"type": ["string", "null"]},
                            "code": {}, "param": {},
                        },
                    }},
                },
            },
        },
    }
