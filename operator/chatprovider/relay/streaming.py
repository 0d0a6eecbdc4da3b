"""Relaying a streamed (SSE) answer: every upstream chunk is written as soon as it arrives.

* Bytes pass through unchanged; a :class:`~chatprovider.domain.sse.StreamObserver` watches them
  for the first token, the usage and the event boundaries.
* After ``keepalive_interval`` of silence a ``: keep-alive`` comment is written (only between
  events), so proxies and clients do not give up on a model that thinks for long.
* After ``streamIdle`` of upstream silence, or when the upstream connection breaks, the stream
  ends with an error event in the operation's own form
  (:func:`~chatprovider.domain.envelopes.stream_error_event`: for chat
  ``data: {"error": {...}}`` and **no** ``data: [DONE]``), so clients see an error and not a
  clean finish.
* A :class:`~chatprovider.relay.guard.StreamGuard` may end the stream the same way: at its
  maximum duration, or when the caller's token or its right to ``use`` the provider is revoked
  (checked again every access-cache TTL).
* When the relay asked a chat or completions stream for its usage on a quota's behalf
  (``Exchange.hide_usage``), a :class:`~chatprovider.domain.stream_usage.UsageFilter` hides
  it: the caller gets the stream it asked for, whole events at a time.
* When the client goes away, the handler is cancelled (``handler_cancellation``) or its next
  write fails; either way the upstream response is closed, which cancels the upstream request.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from chatprovider.domain.apis import Operation
from chatprovider.domain.envelopes import stream_error_event
from chatprovider.domain.headers import downstream_headers
from chatprovider.domain.openai_errors import UpstreamFailure, UpstreamFailureKind
from chatprovider.domain.routing import PROVIDER_HEADER
from chatprovider.domain.sse import StreamObserver
from chatprovider.domain.stream_usage import UsageFilter
from chatprovider.relay.exchange import Exchange
from chatprovider.relay.guard import StreamCut, StreamGuard
from chatprovider.relay.target import Target
from chatprovider.upstream.connection import UpstreamResponse

__all__ = ["KEEPALIVE", "relay_stream"]

log = logging.getLogger(__name__)

KEEPALIVE = b": keep-alive\n\n"


class ClientGone(Exception):
    """Writing to the client failed: it disconnected."""


async def relay_stream(request: web.Request, resp: UpstreamResponse, target: Target,
                       exchange: Exchange, keepalive: float, guard: StreamGuard,
                       operation: Operation) -> web.StreamResponse:
    """Stream the upstream's 2xx SSE answer to the client."""
    out = web.StreamResponse(status=resp.status)
    for name, value in downstream_headers(resp.headers.items()):
        out.headers.add(name, value)
    out.headers["Cache-Control"] = "no-cache"
    out.headers["X-Accel-Buffering"] = "no"
    out.headers[PROVIDER_HEADER] = target.provider
    out.headers.update(exchange.quota_headers)
    await out.prepare(request)
    exchange.prepared = True
    observer = StreamObserver()
    hidden = UsageFilter() if exchange.hide_usage else None
    try:
        await _pump(resp, out, observer, target, exchange, keepalive, guard, hidden)
        if hidden is not None and (rest := hidden.flush()):
            await _write(out, rest)
    except (UpstreamFailure, StreamCut) as ended:
        error = ended.error if isinstance(ended, StreamCut) else ended
        exchange.failure = ended.kind.value if isinstance(ended, UpstreamFailure) else error.code
        log.info("stream from %s ended by %s", target.provider, exchange.failure)
        try:
            await out.write(stream_error_event(operation, error))
        except (ClientGone, ConnectionError):
            return out
    except ClientGone:
        exchange.failure = "client_disconnected"
        resp.close()
        return out
    try:
        await out.write_eof()
    except ConnectionError:
        pass
    return out


async def _write(out: web.StreamResponse, data: bytes) -> None:
    try:
        await out.write(data)
    except (ConnectionError, RuntimeError) as exc:  # closed transport
        raise ClientGone() from exc


async def _pump(resp: UpstreamResponse, out: web.StreamResponse,
                observer: StreamObserver, target: Target, exchange: Exchange,
                keepalive: float, guard: StreamGuard, hidden: UsageFilter | None) -> None:
    # One read at a time under a deadline (no task or wait() per chunk: this loop is the
    # streaming hot path). Cancelling a pending readany() loses nothing: data stays buffered.
    loop = asyncio.get_running_loop()
    last_data = last_write = loop.time()
    while True:
        deadline = last_data + target.idle
        if keepalive > 0:
            deadline = min(deadline, last_write + keepalive)
        # The guard may only end the stream between two events (never inside one).
        guarded = guard.due() if observer.at_boundary else None
        if guarded is not None:
            deadline = min(deadline, guarded)
        try:
            async with asyncio.timeout_at(deadline):
                chunk = await resp.readany()
        except TimeoutError:
            now = loop.time()
            if guarded is not None and now >= guarded:
                await guard.run(now)
            if now - last_data >= target.idle:
                raise UpstreamFailure(UpstreamFailureKind.IDLE_TIMEOUT, target.provider) from None
            if keepalive > 0 and now - last_write >= keepalive:
                if observer.at_boundary:
                    await _write(out, KEEPALIVE)
                last_write = now
            continue
        except OSError:  # the connection broke (UpstreamDisconnected)
            raise UpstreamFailure(UpstreamFailureKind.DISCONNECTED, target.provider) from None
        if not chunk:
            return
        last_data = last_write = loop.time()
        if guarded is not None and last_data >= guarded:
            await guard.run(last_data)
        if observer.feed(chunk):
            exchange.first_token_at = last_data
        exchange.usage = observer.usage
        exchange.response_id = observer.response_id
        exchange.completed = observer.done
        exchange.relayed_tokens = observer.token_events
        if hidden is not None:
            chunk = hidden.feed(chunk)
            if not chunk:
                continue
        await _write(out, chunk)
