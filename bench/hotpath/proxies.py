"""The same minimal relay hop on three Python HTTP stacks: read a POST, send it upstream on a
kept-alive connection, answer with the upstream's body. No routing, auth or metrics: what each
stack costs per request by itself, the floor under any relay built on it.

    python -m bench.hotpath.proxies aiohttp|aiohttp+raw|httptools PORT UPSTREAM_PORT
    UPSTREAM_PORT=... python -m granian --interface rsgi ... bench.hotpath.proxies:rsgi_app

Servers, each with aiohttp's client or with the raw client (asyncio protocols on uvloop, llhttp
through httptools parsing the answer, kept-alive connections in a pool):

* ``aiohttp``, ``aiohttp+raw``: aiohttp's server on uvloop (with aiohttp's client: the relay's
  stack today);
* ``granian``, ``granian+raw``: granian's Rust HTTP server (RSGI, one worker, uvloop;
  ``rsgi_app`` and ``rsgi_app_raw``);
* ``httptools``: asyncio protocols on uvloop with llhttp parsing the request too, and the raw
  client.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import deque
from typing import Any, cast

import aiohttp
import httptools
import uvloop
from aiohttp import web

__all__ = ["rsgi_app", "rsgi_app_raw"]

_HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
_PATH = "/v1/chat/completions"


def _upstream() -> str:
    return f"http://127.0.0.1:{os.environ['UPSTREAM_PORT']}{_PATH}"


# ---- aiohttp server + client --------------------------------------------------------------

def serve_aiohttp(port: int, raw: bool = False) -> None:
    async def start() -> None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        url = _upstream()

        async def relay(request: web.Request) -> web.Response:
            body = await request.read()
            if raw:
                status, data = await _forward(body)
                return web.Response(body=data, status=status, content_type="application/json")
            async with session.post(url, data=body, headers=_HEADERS) as answer:
                data = await answer.read()
                return web.Response(body=data, status=answer.status,
                                    content_type="application/json")

        app = web.Application()
        app.router.add_post(_PATH, relay)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    uvloop.run(start())


# ---- granian (RSGI) + aiohttp client --------------------------------------------------------

_session: aiohttp.ClientSession | None = None


async def rsgi_app(scope: Any, protocol: Any) -> None:
    """The RSGI application granian serves (its client session made on granian's loop)."""
    global _session
    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    body = await protocol()
    async with _session.post(_upstream(), data=body, headers=_HEADERS) as answer:
        data = await answer.read()
        protocol.response_bytes(answer.status, [("content-type", "application/json")], data)


async def rsgi_app_raw(scope: Any, protocol: Any) -> None:
    """The same with the raw client."""
    status, data = await _forward(await protocol())
    protocol.response_bytes(status, [("content-type", "application/json")], data)


# ---- the raw client, and httptools on both sides ---------------------------------------------

class _Parsed(asyncio.Protocol):
    """A connection whose bytes llhttp parses, collecting each message's body."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser
        self.transport: asyncio.Transport | None = None
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is not a subclass)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)


class _Upstream(_Parsed):
    """One kept-alive upstream connection; one request at a time."""

    def __init__(self, pool: deque[_Upstream]) -> None:
        super().__init__(httptools.HttpResponseParser(self))
        self.pool = pool
        self.done: asyncio.Future[tuple[int, bytes]] | None = None

    def on_message_complete(self) -> None:
        assert self.done is not None
        self.done.set_result((self.parser.get_status_code(), b"".join(self.body)))
        self.body = []
        self.pool.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool:
            self.pool.remove(self)
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("upstream closed"))

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.done


_pool: deque[_Upstream] = deque()


async def _forward(body: bytes) -> tuple[int, bytes]:
    """POST ``body`` upstream on an idle pooled connection (or a new one): status and body."""
    if _pool:
        upstream = _pool.popleft()
    else:
        _, upstream = await asyncio.get_running_loop().create_connection(
            lambda: _Upstream(_pool), "127.0.0.1", int(os.environ["UPSTREAM_PORT"]))
    request = (b"POST " + _PATH.encode() + b" HTTP/1.1\r\nHost: upstream\r\n"
               b"Content-Type: application/json\r\nAuthorization: Bearer bench\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return await upstream.send(request)


class _Client(_Parsed):
    """One caller's connection: parse each request, relay it, write the answer."""

    def __init__(self) -> None:
        super().__init__(httptools.HttpRequestParser(self))

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        asyncio.get_running_loop().create_task(self._relay(body))

    async def _relay(self, body: bytes) -> None:
        status, data = await _forward(body)
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % (status, len(data)) + data)


def serve_httptools(port: int) -> None:
    async def start() -> None:
        server = await asyncio.get_running_loop().create_server(
            _Client, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    uvloop.run(start())


if __name__ == "__main__":
    kind, port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.environ["UPSTREAM_PORT"] = upstream
    if kind == "httptools":
        serve_httptools(port)
    else:
        serve_aiohttp(port, raw=kind == "aiohttp+raw")
