"""The aiohttp application of the dev server: journal, auth and fault injection around the routes.

Order of one request: record it in the journal, take a behaviour snapshot, then (for paths the
faults apply to) ``hang`` and ``delay_first_byte``, then auth (401), then the error ``status``,
``malformed_json`` and ``not_openai_shape``, then the route. The journal records how it ended.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .journal import Outcome, RecordedRequest
from .routes import add_routes, error_response
from .state import ServerState, attach, remember, state_of
from .stream import ConnectionCut, abort, send_bad_stream

__all__ = ["build_app"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_MALFORMED = b'{"object":"list","data":[{"id":"trunc'
_NOT_OPENAI = b'{"status":"ok","message":"this is not an OpenAI answer"}'
_STREAMING_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


async def _hang(state: ServerState) -> None:
    """Wait while ``hang`` is set (re-read live) and the server is not stopping."""
    while state.behaviour.hang and not state.stopping.is_set():
        await asyncio.sleep(0.02)


async def _answer(request: web.Request, handler: Handler, state: ServerState,
                  entry: RecordedRequest) -> web.StreamResponse:
    path = request.path
    snapshot = state.behaviour.take(path)
    remember(request, entry, snapshot)
    faulty = snapshot.faults_apply(path)
    if faulty and snapshot.hang:
        await _hang(state)
        if state.stopping.is_set():  # the server goes away without answering
            raise abort(request, web.Response(status=503))
    if faulty and snapshot.delay_first_byte > 0:
        await asyncio.sleep(snapshot.delay_first_byte)
    if path != state.flavour.health_path and not state.keyring.allows(entry.authorization):
        return error_response(401, "Incorrect API key provided.", "invalid_api_key")
    if not faulty:
        return await handler(request)
    if snapshot.status is not None:
        headers = {}
        if snapshot.retry_after is not None:
            value = snapshot.retry_after
            headers["Retry-After"] = str(int(value)) if value == int(value) else str(value)
        return error_response(
            snapshot.status, f"Injected failure (HTTP {snapshot.status}).", headers=headers
        )
    if snapshot.malformed_json or snapshot.not_openai_shape:
        body = entry.body
        if path in _STREAMING_PATHS and isinstance(body, dict) and body.get("stream") is True:
            return await send_bad_stream(request, snapshot, snapshot.malformed_json)
        data = _MALFORMED if snapshot.malformed_json else _NOT_OPENAI
        return web.Response(body=data, content_type="application/json")
    return await handler(request)


@web.middleware
async def _journal(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = state_of(request.app)
    raw = await request.read() if request.body_exists else b""
    entry = RecordedRequest(
        method=request.method, path=request.path, query=request.query_string,
        headers=request.headers, body=_parse(raw), raw=raw, time=time.time(),
    )
    journal = state.journal
    journal.begin(entry)
    outcome: Outcome = "answered"
    status: int | None = None
    try:
        response = await _answer(request, handler, state, entry)
        status = response.status
        return response
    except ConnectionCut as cut:
        outcome = "aborted"
        return cut.response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        outcome = "cancelled"
        raise
    finally:
        journal.end(entry, outcome, status)


def build_app(state: ServerState) -> web.Application:
    """The application serving ``state``'s flavour. Serve it with ``handler_cancellation=True``
    (as :class:`~.server.DevServer` does) so that a client's disconnection cancels its request
    and is counted."""
    app = web.Application(middlewares=[_journal], client_max_size=16 * 1024 * 1024)
    attach(app, state)
    add_routes(app, state.flavour.health_path, state.flavour.name)
    return app
