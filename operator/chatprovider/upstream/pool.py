"""The relay's kept-alive upstream connections for one transport profile (TLS trust, proxy).

:meth:`Pool.post` sends one request and returns the answer once its headers arrived. What it
connects to is what the egress policy allowed: host names are resolved through the
:class:`~chatprovider.upstream.transport.PolicyResolver` (answers cached for ``dns_ttl``) and
only the addresses it kept are dialled; IP literals are checked by the caller
(:meth:`~chatprovider.upstream.transport.Transports.check_destination`).

With a proxy, ``http://`` targets are asked in absolute form through a kept-alive connection
to the proxy, and ``https://`` targets through a ``CONNECT`` tunnel, one per connection, with
TLS to the target inside it. Redirects are never followed (an answer is relayed as it is).

There is no cap on the connections of a pool: concurrency is bounded per provider by the
relay's limiter (a shared cap would stall every provider behind the busiest one).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohappyeyeballs
import httptools
from aiohttp.abc import AbstractResolver
from yarl import URL

from chatprovider.upstream.connection import (
    Connection,
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamDisconnected,
    UpstreamDNSError,
    UpstreamProxyError,
    UpstreamResponse,
)

__all__ = ["HAPPY_EYEBALLS_DELAY", "Pool"]

#: How long a connection attempt may be pending before the next address is tried too.
HAPPY_EYEBALLS_DELAY = 0.25


@dataclass(frozen=True)
class _Origin:
    """Where a connection goes: the server it opens TCP to, and the TLS name inside it."""

    scheme: str
    host: str
    port: int


class Pool:
    """Idle connections by origin, for one profile. Create and use inside one event loop."""

    def __init__(self, ssl_context: ssl.SSLContext, resolver: AbstractResolver, *,
                 proxy: str | None, keepalive_timeout: float, dns_ttl: float) -> None:
        """``keepalive_timeout``: how long an idle connection is kept; ``dns_ttl``: how long a
        resolved answer is reused (0 for either: never)."""
        self._ssl = ssl_context
        self._resolver = resolver
        self._proxy = _origin(URL(proxy)) if proxy else None
        self._keepalive = keepalive_timeout
        self._dns_ttl = dns_ttl
        self._idle: dict[_Origin, deque[Connection]] = {}
        """Idle connections by origin, the longest idle first."""
        self._expires: dict[Connection, float] = {}
        """When each idle connection is to be closed (loop time)."""
        self._sweep: asyncio.TimerHandle | None = None
        """The timer that closes the connection idle the longest when it expires: one for the
        pool, not one per request."""
        self._open: set[Connection] = set()
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self.closed = False

    async def post(self, url: str, headers: Sequence[tuple[str, str]], body: bytes,
                   connect_timeout: float, headers_timeout: float | None = None
                   ) -> UpstreamResponse:
        """POST ``body`` to ``url``; the answer once its headers arrived, within
        ``headers_timeout`` seconds from now (None: no limit); a new connection within
        ``connect_timeout`` and that deadline. Raises ``TimeoutError``, the
        :mod:`~chatprovider.upstream.connection` errors, ``EgressDenied`` and ``ssl`` errors
        (:func:`~chatprovider.upstream.failures.classify` names them)."""
        loop = asyncio.get_running_loop()
        deadline = None if headers_timeout is None else loop.time() + headers_timeout
        target = URL(url)
        origin = _origin(target)
        tunnel = self._proxy is not None and origin.scheme == "https"
        via = self._proxy if self._proxy is not None and not tunnel else origin
        request = _request(target, origin, headers, body,
                           absolute=self._proxy is not None and not tunnel)
        connection = self._take(via)
        if connection is not None:
            try:
                return await _exchange(connection, request, deadline)
            except UpstreamDisconnected:
                # The server closed the kept-alive connection as the request went out on it
                # (llama-server does after a stream): once more, on a new connection.
                pass
        left = None if deadline is None else deadline - loop.time()
        if left is None or left >= connect_timeout:
            connection = await self._connect(origin, tunnel, connect_timeout)
        else:  # less is left than a connect may take (a reused connection failed late)
            try:
                connection = await self._connect(origin, tunnel, max(left, 0.0))
            except UpstreamConnectTimeout:
                raise TimeoutError("no answer within the timeout") from None
        return await _exchange(connection, request, deadline)

    async def close(self) -> None:
        self.closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._expires.clear()
        self._idle.clear()
        connections = list(self._open)
        for connection in connections:
            connection.abort()
        if connections:
            await asyncio.wait([c.closed for c in connections], timeout=1.0)
        await self._resolver.close()

    # -- idle connections ---------------------------------------------------------------------
    def _take(self, origin: _Origin) -> Connection | None:
        idle = self._idle.get(origin)
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be stale
            if connection.usable and not _expired(self._expires.pop(connection), now):
                return connection
            connection.abort()  # past its keep-alive (its sweep is late): never reused
        return None

    def _idle_again(self, origin: _Origin, connection: Connection) -> None:
        if self.closed or self._keepalive <= 0:
            connection.abort()
            return
        loop = asyncio.get_running_loop()
        self._idle.setdefault(origin, deque()).append(connection)
        self._expires[connection] = loop.time() + self._keepalive
        if self._sweep is None:
            self._sweep = loop.call_later(self._keepalive, self._close_expired)

    def _close_expired(self) -> None:
        """Close the connections idle for ``keepalive_timeout``; come back when the next is."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        now, due = loop.time(), None
        for idle in self._idle.values():  # each deque: the longest idle first
            while idle and _expired(self._expires[idle[0]], now):
                del self._expires[connection := idle.popleft()]
                connection.abort()
            if idle:
                first = self._expires[idle[0]]
                due = first if due is None else min(due, first)
        if due is not None:
            self._sweep = loop.call_at(due, self._close_expired)

    def _forget(self, origin: _Origin, connection: Connection) -> None:
        self._open.discard(connection)
        if self._expires.pop(connection, None) is not None:
            idle = self._idle.get(origin)
            if idle is not None and connection in idle:
                idle.remove(connection)

    # -- new connections ----------------------------------------------------------------------
    async def _connect(self, origin: _Origin, tunnel: bool, timeout: float) -> Connection:
        via = self._proxy if self._proxy is not None else origin
        key = origin if tunnel else via  # where its idle connections wait (see post)
        loop = asyncio.get_running_loop()

        def factory() -> Connection:
            connection = Connection(lambda c: self._idle_again(key, c))
            connection.closed.add_done_callback(lambda _: self._forget(key, connection))
            return connection

        try:
            async with asyncio.timeout(timeout):
                addresses = await self._addresses(via.host, via.port)
                transport, connection = await _dial(
                    loop, factory, addresses, via.port,
                    context=self._ssl if via.scheme == "https" else None,
                    server_hostname=via.host)
                if tunnel:
                    try:
                        await _open_tunnel(loop, transport, connection, origin, self._ssl)
                    except BaseException:
                        transport.abort()  # (its protocol is the tunnel's: nothing to forget)
                        raise
                self._open.add(connection)
        except TimeoutError:
            raise UpstreamConnectTimeout() from None
        except UpstreamConnectError as exc:
            if self._proxy is not None:
                raise UpstreamProxyError(exc.errno, "could not connect to the proxy") from exc
            raise
        return connection

    async def _addresses(self, host: str, port: int) -> list[str]:
        if _is_ip(host):
            return [host]
        loop = asyncio.get_running_loop()
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        try:
            results = await self._resolver.resolve(host, port, family=socket.AF_UNSPEC)
        except socket.gaierror as exc:  # (the egress policy's refusal passes as it is)
            raise UpstreamDNSError(exc.errno, "the host name could not be resolved") from exc
        addresses = [r["host"] for r in results]
        if self._dns_ttl > 0:
            if len(self._dns) >= 4096:
                self._dns.clear()
            self._dns[(host, port)] = (loop.time() + self._dns_ttl, addresses)
        return addresses


async def _exchange(connection: Connection, request: bytes,
                    deadline: float | None) -> UpstreamResponse:
    """Send ``request`` and wait for the answer's headers until ``deadline`` (loop time; a
    plain timer on the answer's future: ``asyncio.timeout`` cost 4.7 µs a request); a connection
    given up on while it waits (a timeout, a cancelled caller) is dropped, which cancels the
    upstream's work."""
    timer = None
    try:
        if deadline is not None and deadline <= asyncio.get_running_loop().time():
            raise TimeoutError("no answer within the timeout")  # before sending anything
        answer = connection.send(request)
        if deadline is not None:
            timer = asyncio.get_running_loop().call_at(deadline, _time_out, answer)
        return await answer
    except BaseException:
        connection.abort()
        raise
    finally:
        if timer is not None:
            timer.cancel()


def _expired(expires: float, now: float) -> bool:
    """Whether a connection's keep-alive is over (a millisecond early counts: timers fire to
    the millisecond, and a sweep that found nothing due would come straight back)."""
    return expires <= now + 0.001


def _time_out(answer: asyncio.Future[UpstreamResponse]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError("no answer within the timeout"))


async def _dial(loop: asyncio.AbstractEventLoop, factory: Callable[[], Connection],
                addresses: list[str], port: int, *, context: ssl.SSLContext | None,
                server_hostname: str) -> tuple[asyncio.Transport, Connection]:
    """Connect to the first address that answers, in the resolver's order, starting the next
    attempt after ``HAPPY_EYEBALLS_DELAY`` while one is pending (RFC 8305, as aiohttp does),
    families interleaved: an address that drops packets does not use up the connect timeout.
    Then TLS, whose failure is the server's answer."""
    infos = [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port, 0, 0))
             if ":" in a else
             (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port))
             for a in addresses]
    try:
        sock = await aiohappyeyeballs.start_connection(
            infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, interleave=1, loop=loop)
    except OSError as exc:
        raise UpstreamConnectError(exc) from exc
    try:
        return await loop.create_connection(
            factory, sock=sock, ssl=context,
            server_hostname=server_hostname if context is not None else None)
    except BaseException:
        sock.close()
        raise


async def _open_tunnel(loop: asyncio.AbstractEventLoop, transport: asyncio.Transport,
                       connection: Connection, origin: _Origin, context: ssl.SSLContext) -> None:
    """Ask the proxy for a tunnel to ``origin``, then speak TLS to it inside the tunnel. The
    authority always names the port (RFC 9110 §9.3.6), 443 included."""
    host = f"[{origin.host}]" if ":" in origin.host else origin.host
    authority = f"{host}:{origin.port}"
    answer = _TunnelAnswer()
    transport.set_protocol(answer)
    transport.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    try:
        status = await answer.status
    except UpstreamDisconnected:
        transport.abort()
        raise UpstreamProxyError(None, "the proxy closed the connection") from None
    if status != 200:
        transport.abort()
        raise UpstreamProxyError(None, f"the proxy refused the tunnel ({status})")
    try:
        tls = await loop.start_tls(transport, answer, context, server_hostname=origin.host)
    except BaseException:
        transport.abort()
        raise
    assert tls is not None
    tls.set_protocol(connection)
    connection.connection_made(tls)


class _TunnelAnswer(asyncio.Protocol):
    """Reads the proxy's answer to ``CONNECT`` (its headers only)."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self.status.done():
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # llhttp stops at the end of a CONNECT answer's headers: the tunnel begins
        except httptools.HttpParserError:
            self.status.set_exception(UpstreamDisconnected(before_response=True))

    def on_headers_complete(self) -> None:
        if not self.status.done():
            self.status.set_result(self._parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.status.done():
            self.status.set_exception(UpstreamDisconnected(before_response=True))


def _origin(url: URL) -> _Origin:
    scheme = url.scheme.lower()
    port = url.port or (443 if scheme == "https" else 80)
    return _Origin(scheme, url.raw_host or "", port)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def _authority(host: str, port: int, scheme: str) -> str:
    host = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return host if port == default else f"{host}:{port}"


def _request(target: URL, origin: _Origin, headers: Sequence[tuple[str, str]], body: bytes,
             *, absolute: bool) -> bytes:
    authority = _authority(origin.host, origin.port, origin.scheme)
    path = target.raw_path_qs or "/"
    line = f"{origin.scheme}://{authority}{path}" if absolute else path
    parts = [f"POST {line} HTTP/1.1\r\nHost: {authority}\r\n"]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"header {name!r} cannot be sent: it holds a line break")
        parts.append(f"{name}: {value}\r\n")
    parts.append(f"Content-Length: {len(body)}\r\n\r\n")
    # the client's header bytes pass as they came (aiohttp's server decodes what is not UTF-8
    # with surrogateescape): no caller can make the request unsendable
    return "".join(parts).encode("utf-8", "surrogateescape") + body
