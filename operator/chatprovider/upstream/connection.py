"""One HTTP/1.1 connection to an upstream server: an asyncio protocol whose bytes llhttp (through
``httptools``) parses, and the response it is reading.

This is the relay's hot path (BENCHMARKS.md, "The hot path"): no stream reader, no per-chunk
task, one parser callback per header and per body chunk. A connection carries one request at a
time; the :class:`~chatprovider.upstream.pool.Pool` keeps idle ones for reuse.

The body reaches :meth:`UpstreamResponse.readany` as the server sent it (compressed bytes stay
compressed, chunked framing is removed). Reading pauses when more than ``HIGH_WATER`` bytes
wait unread, so a slow client slows the upstream instead of filling the relay's memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "HIGH_WATER",
    "Connection",
    "UpstreamConnectError",
    "UpstreamConnectTimeout",
    "UpstreamDNSError",
    "UpstreamDisconnected",
    "UpstreamProxyError",
    "UpstreamResponse",
]

#: Unread body bytes above which the connection stops reading from the socket.
HIGH_WATER = 256 * 1024


class UpstreamDNSError(OSError):
    """The host name could not be resolved."""


class UpstreamConnectError(OSError):
    """No connection could be opened to any address of the host (``os_error``: the last
    address's own error)."""

    def __init__(self, os_error: OSError) -> None:
        super().__init__(os_error.errno, os_error.strerror)
        self.os_error = os_error


class UpstreamConnectTimeout(TimeoutError):
    """No connection (TCP and TLS) within the provider's ``timeouts.connect``."""


class UpstreamProxyError(OSError):
    """The proxy could not be reached, or refused to open the tunnel."""


class UpstreamDisconnected(ConnectionError):
    """The connection broke, or the server sent what is not HTTP/1.1. ``before_response``: no
    byte of a response had arrived (on a reused connection, the request may be sent again)."""

    def __init__(self, before_response: bool) -> None:
        super().__init__("the upstream connection was closed")
        self.before_response = before_response


class UpstreamResponse:
    """The status and headers of an upstream answer, and its body as it arrives.

    Exactly one of :meth:`release` (after reading to the end: the connection may be reused) or
    :meth:`close` (drops the connection, which cancels the upstream's work) ends it."""

    def __init__(self, connection: Connection, status: int,
                 headers: CIMultiDictProxy[str]) -> None:
        self.status = status
        self.headers = headers
        self._connection: Connection | None = connection
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: BaseException | None = None

    @property
    def content_type(self) -> str:
        """The media type, lower case, without parameters (``application/octet-stream`` when
        the server sent none)."""
        value = self.headers.get("Content-Type")
        if not value:
            return "application/octet-stream"
        return value.split(";", 1)[0].strip().lower()

    async def readany(self) -> bytes:
        """The next bytes of the body (whatever has arrived), or ``b""`` at its end. Raises
        :class:`UpstreamDisconnected` when the connection broke before the end. Cancelling a
        pending call loses nothing."""
        while (chunk := self.read_nowait()) is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return chunk

    def read_nowait(self) -> bytes | None:
        """What :meth:`readany` would return without waiting; None when it would wait. (A
        small answer is often all here with its headers: reading it needs no timer.)"""
        if not self._chunks:
            if self._error is not None:
                raise self._error
            return b"" if self._ended else None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered <= HIGH_WATER // 4 and self._connection is not None:
            self._connection.resume()
        return chunk

    def release(self) -> None:
        """The body was read to its end: the connection goes back to the pool (if the server
        keeps it alive)."""
        self._finish(self._ended and self._error is None)

    def close(self) -> None:
        """Drop the connection."""
        self._finish(False)

    def _finish(self, reusable: bool) -> None:
        connection, self._connection = self._connection, None  # only once: it may carry
        if connection is not None:  # another request afterwards
            connection.finish(self, reusable)

    # -- fed by the connection -------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and self._connection is not None:
            self._connection.pause()
        self._wake()

    def _end(self) -> None:
        self._ended = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if not self._ended:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Connection(asyncio.Protocol):
    """One kept-alive connection; :meth:`send` one request at a time.

    ``on_idle(connection)`` is called when the answer was read to its end and the server keeps
    the connection open: the pool takes it back."""

    def __init__(self, on_idle: Callable[[Connection], None]) -> None:
        self._on_idle = on_idle
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._waiting: asyncio.Future[UpstreamResponse] | None = None
        self._response: UpstreamResponse | None = None
        self._complete = False
        self._keep_alive = False
        """The server keeps the connection open after this answer (llhttp says so only while
        the answer's last callback runs)."""
        self._until_close = False
        self._paused = False
        self._unsolicited = False
        """The server began an answer nobody asked for: the connection is dropped."""

    # -- used by the pool and the response ----------------------------------------------------
    def send(self, data: bytes) -> asyncio.Future[UpstreamResponse]:
        """Write one whole request; the future resolves when the answer's headers arrived."""
        assert self.transport is not None and self._waiting is None and self._response is None
        self._waiting = asyncio.get_running_loop().create_future()
        self._complete = self._keep_alive = False
        self.transport.write(data)
        return self._waiting

    @property
    def usable(self) -> bool:
        """Open, and not closing (``closed`` resolves a loop turn after an abort)."""
        return not self.closed.done() and self.transport is not None and \
            not self.transport.is_closing()

    def finish(self, response: UpstreamResponse, reusable: bool) -> None:
        if response is not self._response:
            return
        keep = reusable and self._complete and self._keep_alive and self.usable
        self._response = None
        if keep:
            self.resume()
            self._on_idle(self)
        else:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is not a subclass)

    def data_received(self, data: bytes) -> None:
        if self._waiting is None and self._response is None:
            self.abort()  # bytes nobody asked for: the connection is not in a known state
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._broken()  # not HTTP/1.1, or a switch of protocols nobody asked for
            self.abort()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost ends the answer

    def connection_lost(self, exc: Exception | None) -> None:
        if self._response is not None and self._until_close and not self._complete and \
                exc is None and not self._unsolicited:
            self._complete = True  # a body without framing ends when the server closes
            self._response._end()  # (a reset cuts it: _broken fails it)
        self._broken()
        if not self.closed.done():
            self.closed.set_result(None)

    def _broken(self) -> None:
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_exception(UpstreamDisconnected(before_response=True))
        if self._response is not None and not self._complete:
            self._response._fail(UpstreamDisconnected(before_response=False))

    # -- llhttp callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._waiting is None:  # a second answer to one request, or one to none
            self._unsolicited = True
            self._keep_alive = False
            self.abort()
        self._headers = CIMultiDict()

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._unsolicited:
            self._headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200 or self._unsolicited:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        headers = CIMultiDictProxy(self._headers)
        # llhttp's rule: a body is chunked when chunked is the last transfer coding
        codings = ",".join(headers.getall("Transfer-Encoding", ())).split(",")
        chunked = codings[-1].strip().lower() == "chunked"
        self._until_close = "Content-Length" not in headers and not chunked and \
            status not in (204, 304)
        self._response = UpstreamResponse(self, status, headers)
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(self._response)
        self._waiting = None

    def on_body(self, body: bytes) -> None:
        if self._response is not None and not self._unsolicited:
            self._response._feed(body)

    def on_message_complete(self) -> None:
        if self._response is None or self._unsolicited:
            return  # the end of an interim answer, or of one nobody asked for
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive() and not self._until_close
        self._response._end()
