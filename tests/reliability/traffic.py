"""Tools that stand between processes: a round-robin balancer that drains backends (a Service
whose endpoints follow readiness), and an API server proxy that holds chosen requests until
released (a slow initial LIST, made deterministic). Loopback only."""

from __future__ import annotations

import asyncio
import collections
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from .harness import LoopThread

__all__ = ["Balancer", "HoldingApiProxy"]


# -- a balancer ---------------------------------------------------------------------------------
class Balancer:
    """TCP round-robin over ``127.0.0.1`` backends, per connection, as kube-proxy balances a
    Service. :meth:`drain` takes a backend out of rotation (connections open on it carry on,
    as the endpoints of a terminating pod); :meth:`add` puts one in (call it once the backend
    is ready). A connection that finds no backend, or cannot reach the one it was given, is
    closed at once: the client sees the failure."""

    def __init__(self) -> None:
        self._lt = LoopThread("balancer")
        self._rotation: list[int] = []
        self._next = 0
        self.connections: collections.Counter[int] = collections.Counter()
        self.refused = 0
        self._tasks: set[asyncio.Task[Any]] = set()  # held strongly; cancelled at close
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer = self._lt.run(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, port: int) -> None:
        self._lt.call(lambda: self._rotation.append(port))

    def drain(self, port: int) -> None:
        self._lt.call(lambda: self._rotation.remove(port))

    def served(self, port: int) -> int:
        return int(self._lt.call(lambda: self.connections[port]))

    def _pick(self) -> int | None:
        if not self._rotation:
            return None
        port = self._rotation[self._next % len(self._rotation)]
        self._next += 1
        return port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._balance(reader, writer)
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _balance(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                       ) -> None:
        port = self._pick()
        if port is None:
            self.refused += 1
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            self.refused += 1
            writer.close()
            return
        self.connections[port] += 1
        self._writers.add(up_writer)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
                if dst.can_write_eof():
                    dst.write_eof()  # half-close, as TCP forwarding does
            except (ConnectionError, OSError, RuntimeError):
                dst.close()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            up_writer.close()
            self._writers.discard(up_writer)

    def close(self) -> None:
        async def shut() -> None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.sleep(0.05)  # closed transports finish closing
        try:
            self._lt.run(shut(), timeout=10)
        finally:
            self._lt.close()


# -- an API server proxy that holds requests ---------------------------------------------------
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
        "proxy-authorization", "proxy-authenticate", "host"}


def _kind(request: web.Request) -> str | None:
    """``providers`` for the process's own LIST of ChatProviders (kopf's list and watch, which
    run beside it, pass), ``quotas`` for its own LIST of ChatQuotas, ``secrets`` for a LIST of
    Secrets (how a referenced Secret is read before it is watched)."""
    if request.method != "GET" or request.query.get("watch") in ("1", "true"):
        return None
    ours = not request.headers.get("User-Agent", "").startswith("kopf/")
    if request.path.endswith("/chatproviders") and ours:
        return "providers"
    if request.path.endswith("/chatquotas") and ours:
        return "quotas"
    if request.path.endswith("/secrets"):
        return "secrets"
    return None


class HoldingApiProxy:
    """An HTTPS reverse proxy in front of the API server (serving the API server's own
    certificate, so a kubeconfig with the plane's CA trusts it). The answer to a LIST of
    ChatProviders (the process's own) or of Secrets is held while its kind is held
    (:meth:`hold`, :meth:`release`) and counted in ``waiting``: it is fetched at once and
    delivered on release, so it is as stale as a slow answer would be. Everything else, watches
    included, passes through as a stream."""

    def __init__(self, upstream: str, ca_cert: Path, serving_cert: Path, serving_key: Path,
                 held: tuple[str, ...] = ("providers", "secrets")) -> None:
        self.upstream = upstream
        self._lt = LoopThread("api-proxy")
        self.waiting: collections.Counter[str] = collections.Counter()
        self._gates: dict[str, asyncio.Event] = self._lt.run(self._make_gates())
        for kind in held:
            self.hold(kind)
        self._client_ssl = ssl.create_default_context(cafile=str(ca_cert))
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(str(serving_cert), str(serving_key))
        self._session: aiohttp.ClientSession = self._lt.run(self._make_session())
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                   shutdown_timeout=1.0)
        self._lt.run(self._runner.setup())
        self._lt.run(web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_ssl).start())
        self.port = int(self._runner.addresses[0][1])

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def _make_gates(self) -> dict[str, asyncio.Event]:
        gates = {"providers": asyncio.Event(), "quotas": asyncio.Event(),
                 "secrets": asyncio.Event()}
        for gate in gates.values():
            gate.set()
        return gates

    async def _make_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(auto_decompress=False,
                                     timeout=aiohttp.ClientTimeout(total=None))

    def hold(self, kind: str) -> None:
        self._lt.call(self._gates[kind].clear)

    def release(self, kind: str) -> None:
        self._lt.call(self._gates[kind].set)

    def held(self, kind: str) -> int:
        """How many requests of ``kind`` have waited (or are waiting) at a closed gate."""
        return int(self._lt.call(lambda: self.waiting[kind]))

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        kind = _kind(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = await request.read()
        async with self._session.request(
                request.method, f"{self.upstream}{request.path_qs}", headers=headers,
                data=body or None, allow_redirects=False, ssl=self._client_ssl) as resp:
            out = web.StreamResponse(status=resp.status, reason=resp.reason)
            for name, value in resp.headers.items():
                if name.lower() not in _HOP:
                    out.headers.add(name, value)
            if kind is not None and not self._gates[kind].is_set():
                answer = await resp.read()  # fetched now, delivered on release
                self.waiting[kind] += 1
                await self._gates[kind].wait()
                await out.prepare(request)
                await out.write(answer)
            else:
                await out.prepare(request)
                async for chunk in resp.content.iter_any():
                    await out.write(chunk)
            await out.write_eof()
            return out

    def close(self) -> None:
        async def shut() -> Any:
            for gate in self._gates.values():
                gate.set()
            await self._runner.cleanup()
            await self._session.close()
        try:
            self._lt.run(shut(), timeout=15)
        finally:
            self._lt.close()
