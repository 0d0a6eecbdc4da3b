"""Relaying a non-streamed upstream answer: read it (bounded), check it, pass it on.

A 2xx JSON answer is checked to be JSON (a truncated or garbled body becomes a 502 rather than
an error deep inside the client's SDK) and its ``usage`` is counted; the bytes are passed on as
received. An error answer becomes an :class:`~chatprovider.domain.openai_errors.OpenAIError`
for the error middleware: passed through when it is already in the OpenAI envelope, wrapped
otherwise, with ``Retry-After`` and rate-limit headers kept. An error answer that quotes the
provider's API key back (some servers echo the request's headers) is reduced to its status:
the key never reaches the caller.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from chatprovider.domain.headers import downstream_headers
from chatprovider.domain.openai_errors import (
    UpstreamFailure,
    UpstreamFailureKind,
    upstream_error,
)
from chatprovider.domain.routing import PROVIDER_HEADER
from chatprovider.domain.sse import response_id_of, usage_of
from chatprovider.relay.exchange import Exchange
from chatprovider.relay.target import Target
from chatprovider.upstream.connection import UpstreamResponse

__all__ = ["read_body", "relay_answer"]

#: Response header naming the provider that answered (``<namespace>/<name>``).
_ERROR_HEADERS = ("retry-after", "retry-after-ms", "x-request-id")


async def read_body(resp: UpstreamResponse, target: Target, limit: int) -> bytes:
    """The whole body; every read may take up to the idle timeout. Raises UpstreamFailure."""
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            chunk = resp.read_nowait()
            if chunk is None:  # nothing here yet: wait, at most the idle timeout
                async with asyncio.timeout(target.idle):
                    chunk = await resp.readany()
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise UpstreamFailure(UpstreamFailureKind.TOO_LARGE, target.provider)
            chunks.append(chunk)
    except TimeoutError:
        raise UpstreamFailure(UpstreamFailureKind.IDLE_TIMEOUT, target.provider) from None
    except OSError:  # the connection broke (UpstreamDisconnected)
        raise UpstreamFailure(UpstreamFailureKind.DISCONNECTED, target.provider) from None


def _echoes_key(body: bytes, api_key: str | None) -> bool:
    """Whether an error body contains the provider's key (as sent, or JSON-escaped)."""
    if not api_key:
        return False
    escaped = json.dumps(api_key)[1:-1]
    return any(form.encode() in body for form in {api_key, escaped})


def _is_json(resp: UpstreamResponse) -> bool:
    ctype = resp.content_type.lower()
    encoding = resp.headers.get("Content-Encoding", "identity").lower()
    return (ctype == "application/json" or ctype.endswith("+json")) and encoding == "identity"


async def relay_answer(request: web.Request, resp: UpstreamResponse, target: Target,
                       exchange: Exchange, limit: int) -> web.Response:
    """Answer the client with the upstream's (complete) answer, or raise the error."""
    body = await read_body(resp, target, limit)
    if resp.status >= 300:
        kept = {k: v for k, v in resp.headers.items()
                if k.lower() in _ERROR_HEADERS or k.lower().startswith("x-ratelimit-")}
        if _echoes_key(body, target.api_key):
            body = b""  # an upstream that quotes the provider's key back: say only the status
        raise upstream_error(resp.status, body, target.provider, kept,
                             resp.headers.get("Content-Type"))
    if _is_json(resp):
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise UpstreamFailure(UpstreamFailureKind.MALFORMED, target.provider) from None
        exchange.usage = usage_of(payload)
        exchange.response_id = response_id_of(payload)
    response = web.Response(status=resp.status, body=body)
    for name, value in downstream_headers(resp.headers.items()):
        response.headers.add(name, value)
    response.headers[PROVIDER_HEADER] = target.provider
    response.headers.update(exchange.quota_headers)
    return response
