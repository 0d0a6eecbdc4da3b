"""Which HTTP headers cross the relay, in each direction (pure).

Towards the upstream: the client's headers minus hop-by-hop headers (and those the client's
``Connection`` header names), minus credentials (the caller's ``Authorization`` and
``x-api-key`` are never forwarded), minus what the relay sets itself; then the provider's
``spec.headers``; then ``Authorization: Bearer <provider key>`` when the provider has one, and
on Anthropic's routes ``x-api-key: <provider key>`` as well (llama-server and LiteLLM accept
either header there, vLLM only the bearer, Anthropic's own API only ``x-api-key``).

From the caller: the token is ``Authorization: Bearer <token>``, or, when there is no
``Authorization`` header, ``x-api-key: <token>`` (where the Anthropic SDKs put it).

Towards the client: the upstream's headers minus hop-by-hop, framing and cookie headers, so
that ``Retry-After``, ``x-ratelimit-*`` and request ids reach the client.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from chatprovider.api.v1alpha1 import SPEC_CREDENTIAL_HEADERS
from chatprovider.domain.apis import Api

__all__ = [
    "CALLER_CREDENTIAL_HEADERS",
    "HOP_BY_HOP",
    "caller_authorization",
    "downstream_headers",
    "upstream_headers",
]

#: RFC 9110 §7.6.1 connection-specific headers, plus framing headers the relay recomputes.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
    "upgrade", "host", "content-length", "expect",
})
#: Headers that carry the caller's credentials or account; never forwarded.
CALLER_CREDENTIAL_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "x-api-key", "api-key",
    "openai-organization", "openai-project",
})
#: Set by the relay itself on the upstream request.
_RELAY_OWNED = frozenset({"content-type", "accept-encoding", "x-chatprovider"})
#: Dropped from every upstream request whatever the client sends.
_ALWAYS_DROPPED = HOP_BY_HOP | CALLER_CREDENTIAL_HEADERS | _RELAY_OWNED
#: Refused in spec.headers (the CRD refuses them too).
_EXTRA_REFUSED = frozenset(SPEC_CREDENTIAL_HEADERS) | HOP_BY_HOP | _RELAY_OWNED
#: Not passed back to the client.
_DOWNSTREAM_DROPPED = HOP_BY_HOP | frozenset({
    "set-cookie", "www-authenticate", "proxy-authenticate", "server",
    "date", "alt-svc", "x-chatprovider",
})


def _connection_tokens(headers: Sequence[tuple[str, str]]) -> set[str]:
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(t.strip().lower() for t in value.split(",") if t.strip())
    return named


def caller_authorization(authorization: str | None, x_api_key: str | None) -> str | None:
    """The caller's credentials as an ``Authorization`` value: the header itself when present
    (even if malformed: it is then refused, never silently replaced), otherwise ``Bearer
    <x-api-key>``; None when the caller sent neither."""
    if authorization is not None:
        return authorization
    if x_api_key is not None and x_api_key.strip():
        return f"Bearer {x_api_key.strip()}"
    return None


def upstream_headers(
    client: Iterable[tuple[str, str]],
    *,
    api_key: str | None,
    extra: Iterable[tuple[str, str]] = (),
    api: Api = Api.OPENAI,
) -> list[tuple[str, str]]:
    """Headers of the upstream request built from the client's."""
    client = list(client)
    extra = list(extra)
    dropped = _ALWAYS_DROPPED | _connection_tokens(client) | {name.lower() for name, _ in extra}
    out = [(n, v) for n, v in client if n.lower() not in dropped]
    out.extend((n, v) for n, v in extra if n.lower() not in _EXTRA_REFUSED)
    out.append(("Content-Type", "application/json"))
    out.append(("Accept-Encoding", "identity"))
    if api_key:
        out.append(("Authorization", f"Bearer {api_key}"))
        if api is Api.ANTHROPIC:
            out.append(("x-api-key", api_key))
    return out


def downstream_headers(upstream: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers of the client's response built from the upstream's."""
    upstream = list(upstream)
    dropped = _DOWNSTREAM_DROPPED | _connection_tokens(upstream)
    return [(n, v) for n, v in upstream if n.lower() not in dropped]
