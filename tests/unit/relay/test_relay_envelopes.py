"""The relay's errors in each API's own envelope, and the error event that ends each stream."""

from __future__ import annotations

import json

import pytest

from chatprovider.domain import routing
from chatprovider.domain.apis import Api, Operation
from chatprovider.domain.envelopes import anthropic_error_type, error_body, stream_error_event
from chatprovider.domain.openai_errors import (
    OpenAIError,
    UpstreamFailure,
    UpstreamFailureKind,
    from_routing,
    upstream_error,
)


@pytest.mark.parametrize(("error", "kind"), [
    (OpenAIError(400, "bad", "invalid_request_body"), "invalid_request_error"),
    (OpenAIError(401, "no token", "invalid_api_key"), "authentication_error"),
    (from_routing(routing.ProviderForbidden("no")), "permission_error"),
    (from_routing(routing.UnknownModel("no such model")), "not_found_error"),
    (OpenAIError(408, "too long", "stream_timeout"), "timeout_error"),
    (OpenAIError(413, "big", "request_too_large"), "request_too_large"),
    (OpenAIError(415, "not json", "unsupported_media_type"), "invalid_request_error"),
    (OpenAIError(429, "busy", "provider_busy"), "rate_limit_error"),
    (UpstreamFailure(UpstreamFailureKind.REFUSED, "ns/p"), "api_error"),
    (UpstreamFailure(UpstreamFailureKind.AUTH_REJECTED, "ns/p"), "api_error"),
    (from_routing(routing.ProviderNotReady("not ready")), "overloaded_error"),
    (UpstreamFailure(UpstreamFailureKind.FIRST_BYTE_TIMEOUT, "ns/p"), "timeout_error"),
    (OpenAIError(500, "bug", "internal_error"), "api_error"),
])
def test_relay_errors_on_anthropic_routes_use_anthropics_envelope(error: OpenAIError,
                                                                  kind: str) -> None:
    body = json.loads(error_body(Api.ANTHROPIC, error))
    assert body == {"type": "error", "error": {"type": kind, "message": error.message}}
    assert anthropic_error_type(error.status) == kind
    assert json.loads(error_body(Api.OPENAI, error)) == error.envelope()


def test_unlisted_statuses_fall_back_by_class() -> None:
    assert anthropic_error_type(405) == "invalid_request_error"
    assert anthropic_error_type(599) == "api_error"


def test_an_upstream_error_envelope_passes_through_unchanged_on_every_api() -> None:
    for raw in (b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}',
                b'{"error":{"code":500,"message":"messages is required","type":"server_error"}}'):
        error = upstream_error(500, raw, "ns/p")
        assert error_body(Api.ANTHROPIC, error) == raw == error_body(Api.OPENAI, error)


def test_a_non_envelope_upstream_error_is_wrapped_in_the_routes_envelope() -> None:
    error = upstream_error(422, b'{"detail": "bad field"}', "ns/p")
    body = json.loads(error_body(Api.ANTHROPIC, error))
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "bad field" in body["error"]["message"]


def _events(raw: bytes) -> list[dict[str, str]]:
    assert raw.endswith(b"\n\n") and raw.count(b"\n\n") == 1
    return [dict(line.split(": ", 1) for line in raw.decode().strip().split("\n"))]


def test_stream_error_events_take_each_operations_form() -> None:
    error = UpstreamFailure(UpstreamFailureKind.IDLE_TIMEOUT, "ns/p")
    [chat] = _events(stream_error_event(Operation.CHAT, error))
    assert set(chat) == {"data"} and json.loads(chat["data"]) == error.envelope()
    [responses] = _events(stream_error_event(Operation.RESPONSES, error))
    assert responses["event"] == "error"
    assert json.loads(responses["data"]) == {"type": "error", **error.envelope()}
    [messages] = _events(stream_error_event(Operation.MESSAGES, error))
    assert messages["event"] == "error"
    assert json.loads(messages["data"]) == {
        "type": "error", "error": {"type": "timeout_error", "message": error.message}}
