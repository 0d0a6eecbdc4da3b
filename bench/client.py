"""A pool of keep-alive HTTP/1.1 connections on asyncio protocols, one request at a time each.

Much cheaper per request than a general-purpose client (no coroutine, no header objects), so
that the load generator, which shares the machine with the servers it measures, stays light.
A request is handed to an idle connection, a new connection (up to ``max_connections``), or
queued; its latency always counts from the time it was *meant* to be sent.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.wire import ParseError, Response, ResponseParser

__all__ = ["Pool", "Request"]


@dataclass(slots=True, eq=False)
class Request:
    """One request and what became of it (times are ``loop.time()`` values)."""

    intended: float
    payload: bytes
    track_events: bool = False
    sent: float = 0.0
    finished: float = 0.0
    response: Response | None = None
    error: str | None = None
    on_done: Callable[[Request], None] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None and self.response is not None and \
            self.response.status == 200

    @property
    def latency(self) -> float:
        """From the intended send time to the last byte."""
        return self.finished - self.intended


class _Conn(asyncio.Protocol):
    __slots__ = ("_loop", "_parser", "_pool", "current", "transport")

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.current: Request | None = None
        self._parser: ResponseParser | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: Request) -> None:
        assert self.transport is not None
        self.current = request
        self._parser = ResponseParser(request.track_events)
        request.sent = self._loop.time()
        self.transport.write(request.payload)

    def data_received(self, data: bytes) -> None:
        request, parser = self.current, self._parser
        if request is None or parser is None:
            return  # unsolicited bytes: ignore
        now = self._loop.time()
        try:
            done = parser.feed(data, now)
        except ParseError as exc:
            self._fail(str(exc))
            return
        if done:
            self._finish(request, parser.response, now)

    def connection_lost(self, exc: Exception | None) -> None:
        request, parser = self.current, self._parser
        self.transport = None
        if request is not None and parser is not None:
            now = self._loop.time()
            if parser.close(now):
                self._finish(request, parser.response, now, reuse=False)
            else:
                self.current = None
                request.finished = now
                request.error = "connection closed"
                self._pool.request_done(self, request, reuse=False)
        else:
            self._pool.forget(self)

    def _finish(self, request: Request, response: Response, now: float,
                reuse: bool = True) -> None:
        self.current = None
        self._parser = None
        request.finished = now
        request.response = response
        keep = reuse and response.keep_alive and self.transport is not None
        if not keep and self.transport is not None:
            self.transport.close()
        self._pool.request_done(self, request, reuse=keep)

    def _fail(self, error: str) -> None:
        request = self.current
        if self.transport is not None:
            self.transport.abort()
        if request is not None:
            self.current = None
            request.finished = self._loop.time()
            request.error = error
            self._pool.request_done(self, request, reuse=False)


class Pool:
    """Connections to one ``host:port``; :meth:`submit` never blocks."""

    def __init__(self, host: str, port: int, max_connections: int = 4096) -> None:
        self.loop = asyncio.get_running_loop()
        self.host, self.port = host, port
        self.max_connections = max_connections
        self._idle: list[_Conn] = []
        self._all: set[_Conn] = set()
        self._opening = 0
        self._queue: collections.deque[Request] = collections.deque()
        self.in_flight = 0
        self.connect_errors = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def connections(self) -> int:
        return len(self._all)

    async def warm(self, n: int) -> None:
        """Open ``n`` idle connections now (outside any measured window)."""
        need = max(0, n - len(self._all))
        await asyncio.gather(*(self._open() for _ in range(need)))

    async def _open(self) -> None:
        self._opening += 1
        try:
            _, conn = await self.loop.create_connection(lambda: _Conn(self), self.host,
                                                        self.port)
        except OSError:
            self.connect_errors += 1
            self._opening -= 1
            if self._queue and not self._all and not self._opening:
                self._fail_queue("connect failed")
            return
        self._opening -= 1
        self._all.add(conn)
        self._release(conn)

    def submit(self, request: Request) -> None:
        self.in_flight += 1
        if self._idle:
            self._idle.pop().send(request)
            return
        self._queue.append(request)
        if len(self._all) + self._opening < self.max_connections and \
                self._opening < len(self._queue):
            task = self.loop.create_task(self._open())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _release(self, conn: _Conn) -> None:
        if self._queue:
            conn.send(self._queue.popleft())
        else:
            self._idle.append(conn)

    def request_done(self, conn: _Conn, request: Request, reuse: bool) -> None:
        self.in_flight -= 1
        if reuse:
            self._release(conn)
        else:
            self.forget(conn)
            if self._queue and len(self._all) + self._opening < self.max_connections:
                task = self.loop.create_task(self._open())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if request.on_done is not None:
            request.on_done(request)

    def forget(self, conn: _Conn) -> None:
        self._all.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)

    def _fail_queue(self, error: str) -> None:
        now = self.loop.time()
        while self._queue:
            request = self._queue.popleft()
            request.finished, request.error = now, error
            self.in_flight -= 1
            if request.on_done is not None:
                request.on_done(request)

    def abandon(self) -> list[Request]:
        """Give up on queued and in-flight requests (end of a measured window)."""
        lost = list(self._queue)
        self._queue.clear()
        for conn in list(self._all):
            if conn.current is not None:
                lost.append(conn.current)
                conn.current = None
            if conn.transport is not None:
                conn.transport.abort()
        self._all.clear()
        self._idle.clear()
        self.in_flight = 0
        return lost

    async def close(self) -> None:
        for conn in list(self._all):
            if conn.transport is not None:
                conn.transport.close()
        self._all.clear()
        self._idle.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)
