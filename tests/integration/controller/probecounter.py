"""An upstream that counts, per provider, the checks in flight at the same moment.

Each provider gets its own base URL, ``http://127.0.0.1:PORT/<provider>/v1``; the server answers
``GET /<provider>/v1/models`` after ``delay`` seconds (a slow check) and records, per provider,
how many of its requests were in flight at once, how many arrived in all, and the ``X-Rev``
header of each (a spec revision the test puts into ``spec.headers``).
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any

from aiohttp import web

__all__ = ["ProbeCounter"]


class ProbeCounter:
    def __init__(self, delay: float, models: tuple[str, ...] = ("m",)) -> None:
        self.delay = delay
        self.models = models
        self._lock = threading.Lock()
        self._in_flight: collections.Counter[str] = collections.Counter()
        self.max_in_flight: collections.Counter[str] = collections.Counter()
        self.total: collections.Counter[str] = collections.Counter()
        self.revisions: dict[str, list[str | None]] = collections.defaultdict(list)
        self._all = 0
        self.max_all = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="probe-counter")
        self._thread.start()
        app = web.Application()
        app.router.add_get("/{provider}/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        self._call(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._call(site.start())
        self.port = int(self._runner.addresses[0][1])

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def url(self, provider: str) -> str:
        return f"http://127.0.0.1:{self.port}/{provider}/v1"

    async def _models(self, request: web.Request) -> web.Response:
        name = request.match_info["provider"]
        with self._lock:
            self._in_flight[name] += 1
            self.max_in_flight[name] = max(self.max_in_flight[name], self._in_flight[name])
            self._all += 1
            self.max_all = max(self.max_all, self._all)
            self.total[name] += 1
            self.revisions[name].append(request.headers.get("X-Rev"))
        try:
            await asyncio.sleep(self.delay)
            return web.json_response({"object": "list", "data": [
                {"id": m, "object": "model", "owned_by": "probe-counter"} for m in self.models]})
        finally:
            with self._lock:
                self._in_flight[name] -= 1
                self._all -= 1

    def in_flight(self) -> int:
        with self._lock:
            return self._all

    def last_revision(self, provider: str) -> str | None:
        with self._lock:
            revs = self.revisions.get(provider) or [None]
            return revs[-1]

    def close(self) -> None:
        try:
            self._call(self._runner.cleanup())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    def __enter__(self) -> ProbeCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
