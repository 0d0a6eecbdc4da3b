"""The operator's work queue, with client-go's semantics.

Each key (a provider) is in exactly one state::

    idle ──add──► waiting(due) ──due──► queued ──get──► running ──done──► idle / waiting / queued
                      ▲  add: the earlier due wins        │ add while running: marked dirty
                      └────────────────────────────────────┘ (run once more, after this run)

* a key is waiting, queued or running, **never two of these, and never twice**: adding a queued
  key changes nothing, adding a waiting key keeps the earlier due time;
* a key added while it runs is marked dirty and queued again when the run is done (once, however
  many adds came), so a change during a check is never lost and never checked concurrently;
* :meth:`done` also takes the next run the worker wants (the periodic re-check, a back-off), and
  the earlier of that and a dirty mark wins;
* :meth:`forget` drops a key (deleted provider): a waiting or queued key is removed, a running one
  is not re-queued.

The queue itself is synchronous and takes its clock as a function, so that tests drive time by
hand; :meth:`get` is the one coroutine, for the workers of one event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Hashable
from enum import Enum
from typing import Generic, TypeVar

__all__ = ["KeyState", "WorkQueue"]

K = TypeVar("K", bound=Hashable)


class KeyState(Enum):
    IDLE = "idle"
    WAITING = "waiting"
    QUEUED = "queued"
    RUNNING = "running"


class WorkQueue(Generic[K]):
    """Deduplicating, delaying work queue (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due: dict[K, float] = {}  # waiting or queued keys: when they are due
        self._heap: list[tuple[float, int, K]] = []  # (due, seq, key); stale entries skipped
        self._seq = itertools.count()
        self._running: dict[K, float | None] = {}  # running key -> when a dirty mark wants it
        self._forgotten: set[K] = set()  # running keys that are not to be re-queued
        self._changed: asyncio.Event | None = None
        self._shut = False

    # -- state ----------------------------------------------------------------------------------
    def state(self, key: K) -> KeyState:
        if key in self._running:
            return KeyState.RUNNING
        due = self._due.get(key)
        if due is None:
            return KeyState.IDLE
        return KeyState.QUEUED if due <= self._clock() else KeyState.WAITING

    def __len__(self) -> int:
        """Keys waiting or queued (not running)."""
        return len(self._due)

    @property
    def running(self) -> int:
        return len(self._running)

    def next_due(self) -> float | None:
        """When the earliest waiting or queued key is due (clock time), or None."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    # -- changes --------------------------------------------------------------------------------
    def add(self, key: K, delay: float = 0.0) -> None:
        """Have ``key`` run after ``delay`` seconds (0: as soon as a worker is free)."""
        due = self._clock() + max(0.0, delay)
        self._forgotten.discard(key)
        if key in self._running:
            wanted = self._running[key]
            self._running[key] = due if wanted is None else min(wanted, due)
            return
        current = self._due.get(key)
        if current is not None and current <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))
        self._notify()

    def forget(self, key: K) -> None:
        """Stop tracking ``key`` (its heap entry goes stale); a running key is not re-queued."""
        self._due.pop(key, None)
        if key in self._running:
            self._forgotten.add(key)
            self._running[key] = None

    def take(self) -> K | None:
        """The next due key, now running; None when nothing is due."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > self._clock():
            return None
        _, _, key = heapq.heappop(self._heap)
        del self._due[key]
        self._running[key] = None
        return key

    def done(self, key: K, again_after: float | None = None) -> None:
        """``key``'s run is over; run it again after ``again_after`` seconds (None: only if it
        was added meanwhile)."""
        wanted = self._running.pop(key, None)
        if key in self._forgotten:
            self._forgotten.discard(key)
            return
        if again_after is not None:
            due = self._clock() + max(0.0, again_after)
            wanted = due if wanted is None else min(wanted, due)
        if wanted is not None:
            self._due[key] = wanted
            heapq.heappush(self._heap, (wanted, next(self._seq), key))
            self._notify()

    def shut_down(self) -> None:
        """Make every :meth:`get` return None from now on."""
        self._shut = True
        self._notify()

    # -- waiting ------------------------------------------------------------------------------
    async def get(self) -> K | None:
        """Wait for the next due key and mark it running; None once :meth:`shut_down`."""
        if self._changed is None:
            self._changed = asyncio.Event()
        while not self._shut:
            key = self.take()
            if key is not None:
                return key
            due = self.next_due()
            self._changed.clear()
            timeout = None if due is None else max(0.0, due - self._clock())
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            except TimeoutError:
                pass
        return None

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _drop_stale(self) -> None:
        while self._heap:
            due, _, key = self._heap[0]
            if self._due.get(key) == due and key not in self._running:
                return
            heapq.heappop(self._heap)
