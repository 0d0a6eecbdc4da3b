"""The OpenAI error envelope, and how the relay's and the upstream's failures map onto it (pure).

Every error the relay answers is ``{"error": {"message", "type", "code", "param"}}``:

=====  ========================  ==========================================================
HTTP   ``type``                  when
=====  ========================  ==========================================================
400    invalid_request_error     bad JSON, no ``model``, ambiguous bare model, bad header
401    authentication_error      missing or invalid bearer token
403    permission_error          the caller may not use the pinned provider
404    invalid_request_error     unknown model (``model_not_found``), unknown route
413    invalid_request_error     request body larger than the limit
415    invalid_request_error     the body is not ``application/json``
429    rate_limit_error          upstream 429 (``Retry-After`` forwarded), provider busy
502    upstream_error            refused, DNS failure, egress denied, TLS, cut connection,
                                 malformed answer, upstream rejected the provider's key
503    upstream_error            provider not Ready, key unavailable, auth service down
504    upstream_error            connect, first-byte or idle timeout
=====  ========================  ==========================================================

Upstream error answers that are already in the envelope are passed through with their status;
others (``{"detail": ...}``, plain text) are wrapped, keeping the status. An upstream 401/403
means the *provider's* key was refused, which is not the caller's fault: it becomes a 502.
Messages never hold a key, a header value or a request body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from chatprovider.domain.routing import RoutingError

__all__ = [
    "OpenAIError",
    "UpstreamFailure",
    "UpstreamFailureKind",
    "error_type",
    "from_routing",
    "is_envelope",
    "upstream_error",
]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_DETAIL_LIMIT = 300


def error_type(status: int) -> str:
    """The envelope's ``type`` for an HTTP status."""
    if status in _TYPES:
        return _TYPES[status]
    if status in (502, 503, 504):
        return "upstream_error"
    return "server_error" if status >= 500 else "invalid_request_error"


class OpenAIError(Exception):
    """An answer in the OpenAI error envelope. Raise it anywhere in a handler."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 param: str | None = None, headers: Mapping[str, str] | None = None,
                 raw: bytes | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})
        self.raw = raw
        """An upstream's own envelope, passed through byte for byte instead of ours."""

    @property
    def type(self) -> str:
        return error_type(self.status)

    def envelope(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code,
                          "param": self.param}}

    def body(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.envelope(), separators=(",", ":")).encode()

    def sse_event(self) -> bytes:
        """The envelope as one SSE ``data:`` event (ends a broken stream, no ``[DONE]``)."""
        return b"data: " + self.body() + b"\n\n"

    def __repr__(self) -> str:
        return f"OpenAIError({self.status}, {self.code!r}, {self.message!r})"


class UpstreamFailureKind(StrEnum):
    """Why an upstream call failed before or while it was answered."""

    REFUSED = "connection_refused"
    DNS = "dns_failure"
    EGRESS_DENIED = "egress_denied"
    CONNECT_FAILED = "connect_failed"
    CONNECT_TIMEOUT = "connect_timeout"
    TLS = "tls_error"
    PROXY = "proxy_error"
    FIRST_BYTE_TIMEOUT = "first_byte_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    DISCONNECTED = "upstream_disconnected"
    MALFORMED = "malformed_response"
    TOO_LARGE = "response_too_large"
    REDIRECT = "redirect_refused"
    AUTH_REJECTED = "upstream_auth_rejected"

    @property
    def before_send(self) -> bool:
        """The request certainly did not reach the upstream server: safe to try another."""
        return self in _NOT_SENT


_NOT_SENT = frozenset({
    UpstreamFailureKind.REFUSED, UpstreamFailureKind.DNS, UpstreamFailureKind.EGRESS_DENIED,
    UpstreamFailureKind.CONNECT_TIMEOUT, UpstreamFailureKind.CONNECT_FAILED,
})

_FAILURES: dict[UpstreamFailureKind, tuple[int, str]] = {
    UpstreamFailureKind.REFUSED: (502, "the provider refused the connection"),
    UpstreamFailureKind.DNS: (502, "the provider's host name could not be resolved"),
    UpstreamFailureKind.EGRESS_DENIED: (502, "the egress policy refuses the provider's address"),
    UpstreamFailureKind.CONNECT_FAILED: (502, "could not connect to the provider"),
    UpstreamFailureKind.CONNECT_TIMEOUT: (504, "connecting to the provider timed out"),
    UpstreamFailureKind.TLS: (502, "TLS with the provider failed"),
    UpstreamFailureKind.PROXY: (502, "could not connect through the provider's proxy"),
    UpstreamFailureKind.FIRST_BYTE_TIMEOUT: (504, "the provider did not answer in time"),
    UpstreamFailureKind.IDLE_TIMEOUT: (504, "the provider went silent for too long"),
    UpstreamFailureKind.DISCONNECTED: (502, "the provider closed the connection early"),
    UpstreamFailureKind.MALFORMED: (502, "the provider's answer is not valid JSON"),
    UpstreamFailureKind.TOO_LARGE: (502, "the provider's answer is larger than the limit"),
    UpstreamFailureKind.REDIRECT: (502, "the provider answered with a redirect, which is not"
                                        " followed"),
    UpstreamFailureKind.AUTH_REJECTED: (502, "the provider rejected the relay's credentials"),
}


class UpstreamFailure(OpenAIError):
    """A failed upstream call; ``kind.before_send`` tells whether another provider may be
    tried."""

    def __init__(self, kind: UpstreamFailureKind, provider: str, detail: str = "") -> None:
        status, text = _FAILURES[kind]
        message = f"{text} ({provider})" if not detail else f"{text} ({provider}: {detail})"
        super().__init__(status, message, code=kind.value)
        self.kind = kind


def is_envelope(payload: Any) -> bool:
    """Whether ``payload`` is an OpenAI error envelope (``error.message`` is a string)."""
    if not isinstance(payload, dict):
        return False
    error = payload.get("error")
    return isinstance(error, dict) and isinstance(error.get("message"), str)


def upstream_error(status: int, body: bytes, provider: str,
                   headers: Mapping[str, str] | None = None,
                   content_type: str | None = None) -> OpenAIError:
    """The relay's answer to an upstream error answer (status >= 300). ``headers`` (such as
    ``Retry-After``) are answered too, and ``content_type`` (the upstream's ``Content-Type``)
    when the body is passed through."""
    if status in (401, 403, 407):
        return UpstreamFailure(UpstreamFailureKind.AUTH_REJECTED, provider, f"HTTP {status}")
    if status < 400:
        return UpstreamFailure(UpstreamFailureKind.REDIRECT, provider, f"HTTP {status}")
    try:
        payload = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict) and is_envelope(payload):
        error = payload["error"]
        code = error.get("code")
        kept = dict(headers or {})
        if content_type:
            kept["Content-Type"] = content_type
        return OpenAIError(status, error["message"], code if isinstance(code, str) else None,
                           headers=kept, raw=body)
    detail = _detail(payload)
    message = f"the provider answered HTTP {status}" + (f": {detail}" if detail else "")
    return OpenAIError(status, f"{message} ({provider})", "upstream_error", headers=headers)


def _detail(payload: Any) -> str:
    """A short human message from a non-envelope error body; structured details (which may
    echo the request) are left out."""
    if not isinstance(payload, dict):
        return ""
    for name in ("detail", "error", "message"):
        value = payload.get(name)
        if isinstance(value, str) and value.strip():
            text = " ".join(value.split())
            return text if len(text) <= _DETAIL_LIMIT else text[:_DETAIL_LIMIT] + "..."
    return ""


def from_routing(error: RoutingError) -> OpenAIError:
    """The answer to a request that cannot be routed; candidates are named in the message."""
    message = error.message
    if error.candidates:
        message += "; available: " + ", ".join(error.candidates)
    headers = {"Retry-After": "5"} if error.status == 503 else None
    param = None if error.code in ("invalid_provider", "provider_not_found") else "model"
    return OpenAIError(error.status, message, error.code, param, headers)
