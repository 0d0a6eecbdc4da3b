"""A small asyncio cache with expiry, a size bound and single-flight loading."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["TTLCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Values by key for ``ttl`` seconds, at most ``max_size`` of them (LRU).

    Concurrent :meth:`get` calls for a missing key share one load; a load that raises is not
    cached. Use inside one event loop.
    """

    def __init__(self, ttl: float, max_size: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._max = max_size
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, asyncio.Future[V]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: K, load: Callable[[], Awaitable[V]],
                  ttl: Callable[[V], float] | None = None) -> V:
        """The cached value, or the result of ``load()`` stored for ``ttl(value)`` (default:
        the cache's TTL) seconds. The load runs as its own task, so a caller that goes away
        does not cancel it for the others."""
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and (entry[0] > now or not entry[1].done()):
            self._entries.move_to_end(key)
            return await asyncio.shield(entry[1])
        task: asyncio.Future[V] = asyncio.ensure_future(load())
        self._entries[key] = (now + self._ttl, task)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

        def settled(done: asyncio.Future[V]) -> None:
            current = self._entries.get(key)
            if current is None or current[1] is not done:
                return
            if done.cancelled() or done.exception() is not None:
                del self._entries[key]
            elif ttl is not None:
                self._entries[key] = (self._clock() + ttl(done.result()), done)

        task.add_done_callback(settled)
        return await asyncio.shield(task)

    def clear(self) -> None:
        self._entries.clear()
