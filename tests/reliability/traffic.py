"""Tools that stand between processes: a round-robin balancer that drains backends (a Service
whose endpoints follow readiness), and an API server proxy that holds chosen requests until
released (a slow initial LIST, made deterministic). Loopback only."""

from __future__ import annotations

import asyncio
import collections
import ssl
from pathlib import Path
from typing import Any

from chatprovider_tools.apiproxy import ApiServerProxy

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
class HoldingApiProxy:
    """:class:`~chatprovider_tools.apiproxy.ApiServerProxy` over HTTPS (the API server's own
    certificate, so a kubeconfig with the plane's CA trusts it), on a loop of its own for
    tests that drive it synchronously. The answers to LISTs of the ``held`` plurals (by
    clients other than kopf) are held until :meth:`release`."""

    def __init__(self, upstream: str, ca_cert: Path, serving_cert: Path, serving_key: Path,
                 held: tuple[str, ...] = ()) -> None:
        serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        serving.load_cert_chain(str(serving_cert), str(serving_key))
        self._lt = LoopThread("api-proxy")
        self._proxy = ApiServerProxy(upstream, ssl.create_default_context(cafile=str(ca_cert)),
                                     serving)
        self._lt.run(self._proxy.__aenter__())
        for plural in held:
            self.hold(plural)

    @property
    def server(self) -> str:
        return self._proxy.url

    def hold(self, plural: str) -> None:
        self._lt.call(lambda: self._proxy.hold(plural))

    def release(self, plural: str) -> None:
        self._lt.call(lambda: self._proxy.release(plural))

    def held(self, plural: str) -> int:
        """How many LIST answers of ``plural`` have waited (or are waiting) to be released."""
        return int(self._lt.call(lambda: self._proxy.held[plural]))

    def close(self) -> None:
        try:
            self._lt.run(self._proxy.__aexit__(None, None, None), timeout=15)
        finally:
            self._lt.close()
