"""Server-sent events: writing a streamed answer, paced and optionally cut short."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiohttp import web

from .behaviour import Behaviour
from .state import ServerState
from .wire import DONE, frame

__all__ = ["SSE_HEADERS", "ConnectionCut", "abort", "send_bad_stream", "send_events",
           "send_stream"]

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
"""Headers of every streamed answer."""


class ConnectionCut(Exception):
    """Raised after the server aborted a connection on purpose (``cut_stream_after``, or a hung
    request at shutdown)."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("stream cut on purpose")
        self.response = response


def abort(request: web.Request, response: web.StreamResponse) -> ConnectionCut:
    """Close the connection at once, without a proper end; return the exception to raise."""
    transport = request.transport
    if transport is not None:
        transport.abort()  # RST-like: no last chunk, no [DONE]
    return ConnectionCut(response)


async def _write(
    request: web.Request, frames: Sequence[bytes], snapshot: Behaviour, faulty: bool
) -> web.StreamResponse:
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    cut = snapshot.cut_stream_after if faulty else None
    delay = snapshot.frame_delay
    if cut is None and delay <= 0:
        await response.write(b"".join(frames))  # fast path: one write
    else:
        for index, data in enumerate(frames):
            if cut is not None and index >= cut:
                raise abort(request, response)
            if index and delay > 0:
                await asyncio.sleep(delay)
            await response.write(data)
    await response.write_eof()
    return response


async def send_stream(
    request: web.Request,
    state: ServerState,
    snapshot: Behaviour,
    kind: bytes,
    tails: Sequence[bytes],
) -> web.StreamResponse:
    """Stream ``tails`` as ``data:`` events of object ``kind`` (such as
    ``chat.completion.chunk``), then ``data: [DONE]``, honouring ``frame_delay`` and
    ``cut_stream_after`` (which counts events)."""
    prefix = b"cmpl" if kind == b"text_completion" else b"chatcmpl"
    rid = state.next_id(prefix)
    created = int(time.time())
    frames = [frame(kind, rid, created, tail) for tail in tails]
    frames.append(DONE)
    return await _write(request, frames, snapshot, snapshot.faults_apply(request.path))


async def send_events(
    request: web.Request, snapshot: Behaviour, events: Sequence[bytes]
) -> web.StreamResponse:
    """Stream ready-made SSE ``events`` (Responses', Anthropic's), honouring ``frame_delay`` and
    ``cut_stream_after``."""
    return await _write(request, events, snapshot, snapshot.faults_apply(request.path))


async def send_bad_stream(
    request: web.Request, snapshot: Behaviour, malformed: bool
) -> web.StreamResponse:
    """A 200 stream whose events are truncated JSON (``malformed``) or JSON of the wrong shape."""
    if malformed:
        event = b'data: {"id":"chatcmpl-broken","object":"chat.completion.chunk","choi\n\n'
    else:
        event = b'data: {"hello":"world"}\n\n'
    return await _write(request, [event, event, DONE], snapshot, True)
