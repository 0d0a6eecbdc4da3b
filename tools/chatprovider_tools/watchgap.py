"""A loopback proxy to the API server that stages a watch gap ending in ``410 Gone``.

A watch whose resourceVersion the API server no longer keeps ends with an ERROR event of code
410; kopf then lists again. Making a real API server do that takes minutes of churn, so this
proxy stages it: :meth:`WatchGapProxy.gap` ends the watches of a plural that pass through it,
holds the next ones back while the test changes things behind the watch's back, and, when the
gap ends, answers the held watches with that 410 event. :meth:`WatchGapProxy.refuse_sweeps`
answers the next metadata-only lists of a plural (the watch's sweeps) with 503. Everything else
(kopf's lists, our client's requests) is passed through to the API server as it is, streaming.

::

    async with WatchGapProxy(control_plane.server, ssl_context) as proxy:
        ...  # a kubeconfig whose server is proxy.url
        async with proxy.gap("chatproviders"):
            ...  # delete a provider
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from types import TracebackType

import aiohttp
from aiohttp import web

__all__ = ["WatchGapProxy"]

_GONE = json.dumps({"type": "ERROR", "object": {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": "too old resource version (staged by the test's proxy)", "reason": "Expired",
    "code": 410}}).encode() + b"\n"
_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length",
        "content-encoding"}


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                              "message": message, "reason": reason, "code": code}, status=code)


class WatchGapProxy:
    """Plain HTTP on a loopback port in front of ``server`` (https, verified with ``ssl``)."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext) -> None:
        self._server, self._ssl = server.rstrip("/"), ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._cut: dict[str, asyncio.Event] = {}  # per plural: end the watches passing now
        self._held: dict[str, asyncio.Event] = {}  # per plural: set when the gap ends
        self.watches: dict[str, int] = {}  # watch requests seen, per plural
        self.gone_sent: dict[str, int] = {}  # 410s answered, per plural
        self._refusing: dict[str, int] = {}  # metadata lists still to refuse, per plural
        self.refused: dict[str, int] = {}  # metadata lists refused, per plural
        self.metadata_lists: dict[str, int] = {}  # metadata lists seen, per plural

    async def __aenter__(self) -> WatchGapProxy:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        for held in self._held.values():
            held.set()
        for cut in self._cut.values():
            cut.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    @contextlib.asynccontextmanager
    async def gap(self, plural: str) -> AsyncIterator[None]:
        """End the watches of ``plural`` now; hold back the next ones until the block ends,
        then answer them with 410 Gone (the watcher lists again, and watches on)."""
        held = self._held[plural] = asyncio.Event()
        self._cut.setdefault(plural, asyncio.Event()).set()
        try:
            yield
        finally:
            self._cut[plural] = asyncio.Event()
            del self._held[plural]
            held.set()

    def refuse_sweeps(self, plural: str, count: int) -> None:
        """Answer the next ``count`` metadata-only lists of ``plural`` with 503."""
        self._refusing[plural] = count

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        last = request.path.rstrip("/").rsplit("/", 1)[-1]  # the plural, for a collection
        if "PartialObjectMetadataList" in request.headers.get("Accept", ""):
            self.metadata_lists[last] = self.metadata_lists.get(last, 0) + 1
            if self._refusing.get(last, 0) > 0:
                self._refusing[last] -= 1
                self.refused[last] = self.refused.get(last, 0) + 1
                return _status(503, "ServiceUnavailable", "staged by the test's proxy")
        watching = request.method == "GET" and request.query.get("watch") in ("true", "1")
        plural = last if watching else None
        if plural is not None:
            self.watches[plural] = self.watches.get(plural, 0) + 1
            if (held := self._held.get(plural)) is not None:
                await held.wait()
                self.gone_sent[plural] = self.gone_sent.get(plural, 0) + 1
                gone = web.StreamResponse(status=200,
                                          headers={"Content-Type": "application/json"})
                await gone.prepare(request)
                await gone.write(_GONE)
                await gone.write_eof()
                return gone
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = await request.read()
        answer: web.StreamResponse | None = None
        try:
            async with self._session.request(
                    request.method, self._server + request.path_qs, headers=headers,
                    data=body or None, ssl=self._ssl, allow_redirects=False) as upstream:
                if plural is None:  # whole, so that an upstream failure can still be answered
                    return web.Response(status=upstream.status, body=await upstream.read(),
                                        headers={k: v for k, v in upstream.headers.items()
                                                 if k.lower() not in _HOP})
                answer = web.StreamResponse(status=upstream.status, headers={
                    k: v for k, v in upstream.headers.items() if k.lower() not in _HOP})
                await answer.prepare(request)
                await self._stream(upstream, answer, self._cut.setdefault(
                    plural, asyncio.Event()))
                await answer.write_eof()
                return answer
        except aiohttp.ClientError as exc:  # a stale pooled connection, the server going away
            if answer is None:
                return _status(502, "BadGateway", f"the test's proxy: {type(exc).__name__}")
            return answer  # the stream had begun: it ends, and the watcher watches again

    @staticmethod
    async def _stream(upstream: aiohttp.ClientResponse, answer: web.StreamResponse,
                      cut: asyncio.Event) -> None:
        """Copy a watch stream until it ends, or until ``cut`` (then end it cleanly)."""
        chunks = upstream.content.iter_any().__aiter__()
        cutting = asyncio.ensure_future(cut.wait())
        try:
            while True:
                reading = asyncio.ensure_future(anext(chunks, b""))
                done, _ = await asyncio.wait({reading, cutting},
                                             return_when=asyncio.FIRST_COMPLETED)
                if reading not in done:
                    reading.cancel()
                    return
                chunk = reading.result()
                if not chunk:
                    return
                await answer.write(chunk)
        finally:
            cutting.cancel()
