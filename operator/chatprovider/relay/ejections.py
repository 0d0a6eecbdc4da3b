"""Passive health in the relay: what each relayed attempt said about its provider takes the
provider out of routing (:mod:`chatprovider.domain.ejection` decides), asks the operator to
re-check it (:mod:`.recheck`), and brings it back when the re-check passes or its probation
ends; every ejection and return is an Event on the ChatProvider and is counted.

Routing skips the providers in :attr:`Ejections.out` (the same set object, updated in place:
a membership test per candidate on the hot path).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable

from chatprovider.domain.ejection import (
    Ejection,
    EjectionBook,
    EjectionPolicy,
    ReturnReason,
    observation_of,
)
from chatprovider.domain.routing import ProviderRef
from chatprovider.domain.status import EventSpec
from chatprovider.kube.events import EventRecorder
from chatprovider.registry import ProviderView, Registry
from chatprovider.relay.metrics import RelayMetrics
from chatprovider.relay.recheck import RecheckSignal

__all__ = ["Ejections"]

log = logging.getLogger(__name__)


class Ejections:
    """The relay's passive health. ``signal`` and ``events`` are optional (a relay without a
    Kubernetes client still ejects, and brings providers back after their probation)."""

    def __init__(self, registry: Registry, metrics: RelayMetrics, *,
                 policy: EjectionPolicy | None = None, signal: RecheckSignal | None = None,
                 events: EventRecorder | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._book = EjectionBook(policy or EjectionPolicy())
        self._registry = registry
        self._metrics = metrics
        self._signal = signal
        self._events = events
        self._clock = clock
        self._timers: dict[ProviderRef, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.out: set[ProviderRef] = set()
        """The providers out of routing now."""
        registry.listen(self._changed)

    def observe(self, key: ProviderRef, status: int | None, failure: str | None) -> None:
        """One attempt to ``key`` got the upstream HTTP ``status`` (None: no answer) and ended
        with ``failure`` (a failure kind or error code; None: none)."""
        seen = observation_of(status, failure)
        view = self._registry.get(key)
        if seen is None or view is None or self._closed:  # None: deleted during the request
            return
        ejection = self._book.record(key, seen, self._clock(), _checked(view))
        if ejection is not None:
            self._eject(view, ejection)

    def _eject(self, view: ProviderView, ejection: Ejection) -> None:
        key = view.ref
        self.out.add(key)
        reason = ejection.reason
        self._metrics.ejections.labels(key.namespace, key.name, reason.value).inc()
        self._metrics.ejected.set(len(self.out))
        seconds = ejection.until - ejection.since
        log.warning("provider %s is out of routing: %s (%s); back when the operator finds it "
                    "Ready, at most %.0f s from now", key, reason.description, reason.value,
                    seconds)
        signalled = self._signal is not None
        self._post(view, EventSpec(
            "Warning", "Ejected",
            f"out of the relay's routing: {reason.description} ({reason.value}); "
            + ("re-check requested; " if signalled else "")
            + f"back when the operator finds it Ready, or in {seconds:.0f} s"))
        if self._signal is not None:
            self._signal.request(key, view.uid, f"ejected: {reason.value}")
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_at(loop.time() + seconds, self._probation_over, key)

    def _changed(self, key: ProviderRef) -> None:
        """The registry changed ``key``: a newer check that found it Ready brings it back; a
        deleted provider is forgotten."""
        if self._closed:
            return
        view = self._registry.get(key)
        if view is None:
            if self._book.forget(key):
                self._drop(key)
            if self._signal is not None:
                self._signal.forget(key)
        elif key in self.out and self._book.rechecked(key, _checked(view), view.ready):
            self._return(view, ReturnReason.RECHECKED)

    def _probation_over(self, key: ProviderRef) -> None:
        """This key's probation timer: the loop's clock decides (it may run a little behind
        ``clock``), so the book is asked as of the ejection's end."""
        self._timers.pop(key, None)
        view, ejection = self._registry.get(key), self._book.ejected(key)
        if view is None or ejection is None:
            return
        if self._book.expired(ejection.until, (key,) if view.ready else ()):
            self._return(view, ReturnReason.PROBATION_ENDED)

    def _return(self, view: ProviderView, why: ReturnReason) -> None:
        key = view.ref
        self._drop(key)
        self._metrics.returns.labels(key.namespace, key.name, why.value).inc()
        log.info("provider %s is back in routing (%s)", key, why.value)
        message = ("the operator checked it again and found it Ready" if why is
                   ReturnReason.RECHECKED else "its probation ended without a re-check")
        self._post(view, EventSpec("Normal", "Returned",
                                   f"back in the relay's routing: {message} ({why.value})"))

    def _drop(self, key: ProviderRef) -> None:
        self.out.discard(key)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._metrics.ejected.set(len(self.out))

    def _post(self, view: ProviderView, event: EventSpec) -> None:
        if self._events is None:
            return
        task = asyncio.get_running_loop().create_task(self._events.post(view, event),
                                                      name=f"event {event.reason}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop: no more timers, signals or Events (those under way finish)."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._signal is not None:
            await self._signal.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _checked(view: ProviderView | None) -> Hashable:
    """What identifies the provider's last check: its ``status.lastCheck`` (a check writes a
    new one)."""
    if view is None or view.status.last_check is None:
        return None
    last = view.status.last_check
    return (last.time, last.latency_ms, last.verification_latency_ms)
