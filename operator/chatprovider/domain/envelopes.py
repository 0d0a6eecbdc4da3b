"""Each API's own error envelope, for the relay's errors (pure).

The relay raises one error type everywhere (:class:`~chatprovider.domain.openai_errors.OpenAIError`:
a status, a message, a code); this module renders it for the API of the route that failed
(:func:`~chatprovider.domain.apis.api_of_path`):

* OpenAI's routes: ``{"error": {"message", "type", "code", "param"}}`` (see
  :mod:`~chatprovider.domain.openai_errors` for the types);
* Anthropic's routes (``/v1/messages``, ``/v1/messages/count_tokens``):
  ``{"type": "error", "error": {"type", "message"}}`` with Anthropic's types:

=====  =====================  ===============================================================
HTTP   Anthropic ``type``     the relay's errors with this status
=====  =====================  ===============================================================
400    invalid_request_error  bad JSON, no ``model``, ambiguous bare model, bad pin header
401    authentication_error   missing or invalid token
403    permission_error       the caller may not use the provider
404    not_found_error        unknown model, provider or route
408    timeout_error          a stream reached the relay's maximum duration
413    request_too_large      request body over the limit
429    rate_limit_error       upstream 429, provider busy
502    api_error              the upstream failed or refused the provider's key
503    overloaded_error       provider not Ready, key unavailable, auth service down
504    timeout_error          connect, first-byte or idle timeout
=====  =====================  ===============================================================

Other 4xx are ``invalid_request_error``, other 5xx ``api_error``. An upstream's own error answer
(``raw``) is passed through byte for byte whatever the API: no translation.

A stream that fails after it started ends with one error event: for chat and completions
``data: {"error": {...}}`` (no ``[DONE]``); for Responses ``event: error`` with
``{"type": "error", "error": {...}}`` (the OpenAI SDK raises ``APIError`` on both); for Anthropic
messages ``event: error`` with Anthropic's envelope (the Anthropic SDK raises
``APIStatusError``).
"""

from __future__ import annotations

import json
from typing import Any

from chatprovider.domain.apis import Api, Operation
from chatprovider.domain.openai_errors import OpenAIError

__all__ = ["anthropic_envelope", "anthropic_error_type", "error_body", "stream_error_event"]

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def anthropic_error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status."""
    if status in _ANTHROPIC_TYPES:
        return _ANTHROPIC_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_envelope(error: OpenAIError) -> dict[str, Any]:
    return {"type": "error",
            "error": {"type": anthropic_error_type(error.status), "message": error.message}}


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def error_body(api: Api, error: OpenAIError) -> bytes:
    """The body of an error answer on a route of ``api``."""
    if error.raw is not None or api is Api.OPENAI:
        return error.body()
    return _dumps(anthropic_envelope(error))


def stream_error_event(operation: Operation, error: OpenAIError) -> bytes:
    """The last event of a stream of ``operation`` that ``error`` ends."""
    if operation.api is Api.ANTHROPIC:
        return b"event: error\ndata: " + _dumps(anthropic_envelope(error)) + b"\n\n"
    if operation is Operation.RESPONSES:
        return b"event: error\ndata: " + _dumps({"type": "error", **error.envelope()}) + b"\n\n"
    return error.sse_event()
