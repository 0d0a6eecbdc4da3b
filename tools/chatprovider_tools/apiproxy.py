"""A loopback proxy in front of the API server that stages, on demand, what a real one does
only under load or churn.

* :meth:`ApiServerProxy.hold`, :meth:`~ApiServerProxy.release`: the answers to LISTs of a
  plural made by clients other than kopf (a process's own list before it watches; the Secrets
  it reads) are fetched at once and delivered on release, as stale as a slow answer would be;
  ``held`` counts them.
* :meth:`ApiServerProxy.gap`: a watch gap ending in ``410 Gone``. A watch whose
  resourceVersion the API server no longer keeps ends with an ERROR event of code 410, and
  kopf lists again; making a real API server do that takes minutes of churn. The proxy ends
  the watches of a plural that pass through it, holds the next ones back while the test
  changes things behind the watch's back, and, when the gap ends, answers the held watches
  with that 410 event.
* :meth:`ApiServerProxy.refuse_sweeps`: the next metadata-only lists of a plural (the
  watch's sweeps) are answered 503.

Everything else is passed through as it is; watches stream. Plain HTTP, or HTTPS with
``serving`` (a context holding the API server's own certificate, so that a kubeconfig with
the plane's CA trusts the proxy)::

    async with ApiServerProxy(control_plane.server, ssl_context) as proxy:
        ...  # a kubeconfig whose server is proxy.url
        async with proxy.gap("chatproviders"):
            ...  # delete a provider
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from types import TracebackType

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["ApiServerProxy"]

_GONE = json.dumps({"type": "ERROR", "object": {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": "too old resource version (staged by the test's proxy)", "reason": "Expired",
    "code": 410}}).encode() + b"\n"
_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "te",
        "trailer", "upgrade", "proxy-authorization", "proxy-authenticate"}


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                              "message": message, "reason": reason, "code": code}, status=code)


def _headers(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """The end-to-end headers (bodies pass as they are: compressed, if they were)."""
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _HOP)


class ApiServerProxy:
    """A proxy on a loopback port in front of ``server`` (https, verified with ``ssl``)."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext,
                 serving: ssl.SSLContext | None = None) -> None:
        self._server, self._ssl, self._serving = server.rstrip("/"), ssl_context, serving
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._released: dict[str, asyncio.Event] = {}  # per plural: LIST answers go out
        self.held: collections.Counter[str] = collections.Counter()  # LIST answers held
        self._cut: dict[str, asyncio.Event] = {}  # per plural: end the watches passing now
        self._gap_over: dict[str, asyncio.Event] = {}  # per plural: set when the gap ends
        self.watches: collections.Counter[str] = collections.Counter()  # watch requests
        self.gone_sent: collections.Counter[str] = collections.Counter()  # 410s answered
        self._refusing: collections.Counter[str] = collections.Counter()  # lists to refuse
        self.refused: collections.Counter[str] = collections.Counter()  # metadata lists refused
        self.metadata_lists: collections.Counter[str] = collections.Counter()  # seen

    async def __aenter__(self) -> ApiServerProxy:
        self._session = aiohttp.ClientSession(  # bodies as they are, asked for as they were
            auto_decompress=False, skip_auto_headers={"Accept-Encoding"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._serving).start()
        scheme = "https" if self._serving is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        for event in (*self._released.values(), *self._gap_over.values(), *self._cut.values()):
            event.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- what the tests stage ---------------------------------------------------------------
    def hold(self, plural: str) -> None:
        """Hold the answers to the LISTs of ``plural`` by clients other than kopf that arrive
        from now on (one already on its way passes)."""
        self._released.setdefault(plural, asyncio.Event())

    def release(self, plural: str) -> None:
        """Deliver the held answers, and stop holding."""
        if (released := self._released.pop(plural, None)) is not None:
            released.set()

    @contextlib.asynccontextmanager
    async def gap(self, plural: str) -> AsyncIterator[None]:
        """End the watches of ``plural`` now; hold back the next ones until the block ends,
        then answer them with 410 Gone (the watcher lists again, and watches on)."""
        over = self._gap_over[plural] = asyncio.Event()
        self._cut.setdefault(plural, asyncio.Event()).set()
        try:
            yield
        finally:
            self._cut[plural] = asyncio.Event()
            del self._gap_over[plural]
            over.set()

    def refuse_sweeps(self, plural: str, count: int) -> None:
        """Answer the next ``count`` metadata-only lists of ``plural`` with 503."""
        self._refusing[plural] = count

    # -- forwarding ---------------------------------------------------------------------------
    async def _forward(self, request: web.Request) -> web.StreamResponse:
        last = request.path.rstrip("/").rsplit("/", 1)[-1]  # the plural, for a collection
        watching = request.method == "GET" and request.query.get("watch") in ("true", "1")
        if "PartialObjectMetadataList" in request.headers.get("Accept", ""):
            self.metadata_lists[last] += 1
            if self._refusing[last] > 0:
                self._refusing[last] -= 1
                self.refused[last] += 1
                return _status(503, "ServiceUnavailable", "staged by the test's proxy")
        if watching:
            self.watches[last] += 1
            if (over := self._gap_over.get(last)) is not None:
                await over.wait()
                self.gone_sent[last] += 1
                gone = web.StreamResponse(status=200,
                                          headers={"Content-Type": "application/json"})
                await gone.prepare(request)
                await gone.write(_GONE)
                await gone.write_eof()
                return gone
        held = (request.method == "GET" and not watching
                and not request.headers.get("User-Agent", "").startswith("kopf/")
                and self._released.get(last))
        assert self._session is not None
        body = await request.read()
        answer: web.StreamResponse | None = None
        try:
            async with self._session.request(
                    request.method, self._server + request.path_qs,
                    headers=_headers(request.headers), data=body or None, ssl=self._ssl,
                    allow_redirects=False) as upstream:
                if not watching:  # whole, so that an upstream failure can still be answered
                    whole = await upstream.read()
                    if held:
                        self.held[last] += 1
                        await held.wait()
                    return web.Response(status=upstream.status, body=whole,
                                        headers=_headers(upstream.headers))
                answer = web.StreamResponse(status=upstream.status,
                                            headers=_headers(upstream.headers))
                await answer.prepare(request)
                await self._stream(upstream, answer, self._cut.setdefault(
                    last, asyncio.Event()))
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
        reading: asyncio.Future[bytes] | None = None
        try:
            while True:
                reading = asyncio.ensure_future(anext(chunks, b""))
                done, _ = await asyncio.wait({reading, cutting},
                                             return_when=asyncio.FIRST_COMPLETED)
                if reading not in done:
                    return
                chunk = reading.result()
                if not chunk:
                    return
                await answer.write(chunk)
        finally:  # also when the watcher hangs up (the handler is cancelled)
            cutting.cancel()
            if reading is not None:
                reading.cancel()
