"""The relay's upstream connections (chatprovider.upstream.pool) against a server that speaks
hand-written HTTP/1.1 on loopback, where the case must be staged exactly: kept-alive
connections reused, a stale one replaced without the caller noticing, a broken fresh one never
sent twice, every framing of a body, a reset that cuts one, interim, unsolicited and
protocol-switching answers, the client's header bytes passed as they came, the CONNECT request
of a tunnel, and an answer given up on dropping its connection (which is how the upstream
learns to stop generating)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable

import pytest

from chatprovider.domain.egress import EgressPolicy
from chatprovider.upstream.connection import (
    UpstreamDisconnected,
    UpstreamProxyError,
    UpstreamResponse,
)
from chatprovider.upstream.failures import classify
from chatprovider.upstream.pool import Pool
from chatprovider.upstream.transport import PolicyResolver

Answer = Callable[[int, bytes, asyncio.StreamWriter], Awaitable[bool]]
"""Writes the answer to the n-th request on a connection (0-based); False: close it."""

OK = b'{"ok": true}'


class ScriptedServer:
    """Loopback HTTP/1.1 server; each request on a connection is answered by ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.gone = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1/chat/completions"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for n in range(1000):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                if not await self.answer(n, head, writer):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.gone.set()
        finally:
            writer.close()


async def length_framed(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(OK) + OK)
    return True


def pool(proxy: str | None = None) -> Pool:
    return Pool(ssl.create_default_context(), PolicyResolver(EgressPolicy()), proxy=proxy,
                keepalive_timeout=30.0, dns_ttl=10.0)


async def read_all(response: UpstreamResponse) -> bytes:
    chunks = []
    while chunk := await response.readany():
        chunks.append(chunk)
    return b"".join(chunks)


async def post(p: Pool, url: str, body: bytes = b"{}") -> tuple[UpstreamResponse, bytes]:
    response = await p.post(url, [("Content-Type", "application/json")], body, 5.0)
    data = await read_all(response)
    response.release()
    return response, data


def test_requests_in_turn_share_one_kept_alive_connection() -> None:
    async def scenario() -> None:
        async with ScriptedServer(length_framed) as server:
            p = pool()
            for i in range(20):
                response, data = await post(p, server.url, b'{"n": %d}' % i)
                assert (response.status, data) == (200, OK)
            await p.close()
        assert server.connections == 1
        assert [r.rsplit(b"\r\n\r\n", 1)[1] for r in server.requests] == [
            b'{"n": %d}' % i for i in range(20)]
        first = server.requests[0]
        assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"Content-Length: 8\r\n" in first

    asyncio.run(scenario())


def test_a_connection_idle_past_the_keepalive_timeout_is_closed_and_not_reused() -> None:
    async def scenario() -> None:
        async with ScriptedServer(length_framed) as server:
            p = Pool(ssl.create_default_context(), PolicyResolver(EgressPolicy()), proxy=None,
                     keepalive_timeout=0.2, dns_ttl=10.0)
            assert (await post(p, server.url))[1] == OK
            async with asyncio.timeout(10):
                await server.gone.wait()  # the pool closed it once it had been idle 0.2 s
            assert (await post(p, server.url))[1] == OK
            await p.close()
        assert server.connections == 2

    asyncio.run(scenario())


def test_a_kept_alive_connection_the_server_dropped_is_replaced_unnoticed() -> None:
    async def answer(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        if n == 1:
            return False  # the second request on a connection: closed without an answer
        return await length_framed(n, head, writer)

    async def scenario() -> None:
        async with ScriptedServer(answer) as server:
            p = pool()
            for _ in range(3):
                response, data = await post(p, server.url)
                assert (response.status, data) == (200, OK)
            await p.close()
        # request 1 on connection 1; request 2 dropped there, sent again on connection 2;
        # request 3 dropped on connection 2, sent again on connection 3
        assert server.connections == 3 and len(server.requests) == 5

    asyncio.run(scenario())


def test_a_new_connection_that_breaks_is_not_sent_twice() -> None:
    async def hang_up(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        return False

    async def scenario() -> None:
        async with ScriptedServer(hang_up) as server:
            p = pool()
            with pytest.raises(UpstreamDisconnected) as raised:
                await p.post(server.url, [], b"{}", 5.0)
            await p.close()
        assert classify(raised.value).kind.value == "disconnected"
        assert len(server.requests) == 1

    asyncio.run(scenario())


@pytest.mark.parametrize("framing", ["length", "chunked", "until-close"])
def test_every_framing_of_a_body_arrives_whole(framing: str) -> None:
    body = b'{"text": "' + b"x" * 300_000 + b'"}'

    async def answer(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        if framing == "length":
            writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        elif framing == "chunked":
            writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(body), 70_000):
                piece = body[i:i + 70_000]
                writer.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(b"\r\n" + body)
            return False  # the end of the connection is the end of the body
        return True

    async def scenario() -> None:
        async with ScriptedServer(answer) as server:
            p = pool()
            for _ in range(2):
                response, data = await post(p, server.url)
                assert response.status == 200 and response.content_type == "application/json"
                assert data == body
            await p.close()
        assert server.connections == (2 if framing == "until-close" else 1)

    asyncio.run(scenario())


def test_an_interim_answer_is_passed_over() -> None:
    async def answer(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        return await length_framed(n, head, writer)

    async def scenario() -> None:
        async with ScriptedServer(answer) as server:
            p = pool()
            response, data = await post(p, server.url)
            await p.close()
        assert (response.status, data) == (200, OK)

    asyncio.run(scenario())


def test_an_answer_later_than_its_timeout_fails_and_its_connection_is_not_reused() -> None:
    held = asyncio.Event()

    async def first_silent(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        if not held.is_set():  # the first request: taken, never answered
            held.set()
            await asyncio.Event().wait()
        return await length_framed(n, head, writer)

    async def scenario() -> None:
        async with ScriptedServer(first_silent) as server:
            p = pool()
            with pytest.raises(TimeoutError) as raised:
                await p.post(server.url, [], b"{}", 5.0, headers_timeout=0.2)
            assert (await post(p, server.url))[1] == OK
            await p.close()
        assert classify(raised.value).kind.value == "timeout"
        assert server.connections == 2  # the one given up on was dropped, not reused

    asyncio.run(scenario())


def test_closing_an_answer_half_read_drops_its_connection() -> None:
    async def endless(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        while True:  # a model that never stops, until the connection goes
            event = b"data: {}\n\n"
            writer.write(b"%x\r\n" % len(event) + event + b"\r\n")
            await writer.drain()

    async def scenario() -> None:
        async with ScriptedServer(endless) as server:
            p = pool()
            response = await p.post(server.url, [], b"{}", 5.0)
            assert (await response.readany()).startswith(b"data: {}")
            response.close()
            async with asyncio.timeout(10):
                await server.gone.wait()
            await p.close()
        assert server.connections == 1

    asyncio.run(scenario())


def test_what_has_arrived_is_read_without_waiting_and_nothing_more() -> None:
    """``read_nowait`` gives the body bytes already here, None while the rest is still on its
    way, and ``b""`` once the answer has ended (the relay reads a small answer without a
    timer only when it is all here)."""
    release = asyncio.Event()

    async def in_two_parts(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(OK) + OK[:4])
        await writer.drain()
        await release.wait()
        writer.write(OK[4:])
        return True

    async def scenario() -> None:
        async with ScriptedServer(in_two_parts) as server:
            p = pool()
            response = await p.post(server.url, [], b"{}", 5.0)
            assert await response.readany() == OK[:4]
            assert response.read_nowait() is None  # the rest is held back by the server
            release.set()
            assert await response.readany() == OK[4:]
            assert response.read_nowait() == b""  # the end, known without waiting
            response.release()
            await p.close()

    asyncio.run(scenario())


def assert_answer_breaks(sent: bytes) -> None:
    """A server that answers ``sent`` and holds the connection open: the parser, not a close,
    breaks the answer."""
    async def answer(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(sent)
        await writer.drain()
        await asyncio.Event().wait()
        return False

    async def scenario() -> None:
        async with ScriptedServer(answer) as server:
            p = pool()
            with pytest.raises(UpstreamDisconnected):
                async with asyncio.timeout(10):
                    await p.post(server.url, [], b"{}", 5.0)
            await p.close()

    asyncio.run(scenario())


def test_a_server_that_speaks_no_http_breaks_the_answer() -> None:
    assert_answer_breaks(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")


def test_a_reset_that_cuts_an_unframed_body_is_not_its_end() -> None:
    headers_read = asyncio.Event()

    async def cut(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"text\": \"")
        await writer.drain()
        await headers_read.wait()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST: the body ends with the connection, but not like this
        return False

    async def scenario() -> None:
        async with ScriptedServer(cut) as server:
            p = pool()
            response = await p.post(server.url, [], b"{}", 5.0)
            headers_read.set()
            with pytest.raises(UpstreamDisconnected):
                async with asyncio.timeout(10):
                    await read_all(response)
            response.close()
            await p.close()

    asyncio.run(scenario())


def test_an_answer_nobody_asked_for_is_never_taken_for_the_next_one() -> None:
    async def twice(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        second = b'{"second": true}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(OK), OK) +
                     b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(second), second))
        return True

    async def scenario() -> None:
        async with ScriptedServer(twice) as server:
            p = pool()
            for _ in range(3):
                response, data = await post(p, server.url)
                assert (response.status, data) == (200, OK)
            await p.close()
        assert server.connections == 3  # each connection dropped after its extra answer

    asyncio.run(scenario())


def test_a_switch_of_protocols_nobody_asked_for_breaks_the_answer() -> None:
    assert_answer_breaks(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\n")


def test_the_clients_header_bytes_are_sent_as_they_came() -> None:
    async def scenario() -> None:
        async with ScriptedServer(length_framed) as server:
            p = pool()
            # what aiohttp's server makes of the byte 0xff in a header value
            raw = b"a\xffb".decode("utf-8", "surrogateescape")
            response = await p.post(server.url, [("X-Name", raw)], b"{}", 5.0)
            assert response.status == 200
            response.close()
            await p.close()
        assert b"\r\nX-Name: a\xffb\r\n" in server.requests[0]

    asyncio.run(scenario())


def test_a_tunnel_is_asked_for_with_the_port_even_the_default_one() -> None:
    async def refuse(n: int, head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        return True

    async def scenario() -> None:
        async with ScriptedServer(refuse) as proxy:
            p = pool(proxy=proxy.url.split("/v1")[0])
            for url in ("https://api.example.test/v1/chat/completions",
                        "https://[2001:db8::1]:8443/v1/chat/completions"):
                with pytest.raises(UpstreamProxyError) as raised:
                    await p.post(url, [], b"{}", 5.0)
                assert classify(raised.value).kind.value == "proxy_error"
            await p.close()
        assert [r.split(b"\r\n\r\n")[0] for r in proxy.requests] == [
            b"CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test:443",
            b"CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443"]

    asyncio.run(scenario())
