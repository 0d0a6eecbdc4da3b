"""The operator's control loop: when to check each provider, and what a check writes.

Watch events, Secret/ConfigMap changes and the refresh annotation put providers on a
:class:`~chatprovider.controller.workqueue.WorkQueue`; ``settings.workers`` workers take them
off, check them and put them back for their next check. The queue guarantees that one provider
is never checked twice at a time, and that a change during a check runs it once more afterwards.

When the next check comes is decided in exactly one place (:func:`next_delay`): healthy, or
failing for a reason only a change can fix, at the provider's interval (plus jitter); failing
for a reason that may pass by itself, with exponential back-off capped by the interval. A
provider seen for the first time is checked at once unless its status is current (for its
generation): then at a random point of its next interval, so that a restarted operator neither
probes every endpoint at once nor writes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from chatprovider.controller.prober import ProbeRequest, endpoint_of, probe
from chatprovider.controller.references import resolve_references
from chatprovider.controller.status import StatusApplier
from chatprovider.controller.workqueue import WorkQueue
from chatprovider.domain.endpoint import InvalidEndpoint
from chatprovider.domain.probe import Retry, assess
from chatprovider.domain.routing import ProviderRef
from chatprovider.domain.status import StatusInputs, build_status, needs_write, transitions
from chatprovider.feed import Feed
from chatprovider.kube.events import EventRecorder
from chatprovider.kube.objects import ObjectSnapshot
from chatprovider.registry import ObjectRef, ProviderView, ref_of
from chatprovider.settings import OperatorSettings
from chatprovider.upstream.transport import Transports

__all__ = ["Reconciler", "next_delay"]

log = logging.getLogger(__name__)


def next_delay(retry: Retry, failures: int, interval: float, *, min_retry: float,
               jitter: float, rng: random.Random) -> float:
    """Seconds until the next check after one that ended with ``retry`` (the ``failures``-th
    transient failure in a row, counting from 0)."""
    if retry is Retry.TRANSIENT:
        return min(interval, min_retry * (2.0 ** failures)) * rng.uniform(0.9, 1.1)
    return interval * (1.0 + rng.uniform(0.0, jitter))


class Reconciler:
    """Feed it watch events with :meth:`observe`; :meth:`run` its workers (while leading)."""

    def __init__(self, settings: OperatorSettings, feed: Feed, transports: Transports,
                 applier: StatusApplier, recorder: EventRecorder, *,
                 rng: random.Random | None = None,
                 wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
                 ) -> None:
        self.settings, self.feed = settings, feed
        self.registry, self.objects = feed.registry, feed.objects
        self.transports, self.applier, self.recorder = transports, applier, recorder
        self.queue: WorkQueue[ProviderRef] = WorkQueue()
        self._rng = rng or random.Random()
        self._wall = wall_clock
        self._failures: dict[ProviderRef, int] = {}
        self._refresh_seen: dict[ProviderRef, str | None] = {}
        self._refreshed: set[ProviderRef] = set()  # asked for: the next check writes lastCheck
        self.stats = {"checks": 0, "writes": 0, "events": 0}

    # -- inputs -------------------------------------------------------------------------------
    def observe(self, event_type: str, body: Mapping[str, Any]) -> None:
        """A watch event for a ChatProvider (ADDED/MODIFIED/DELETED)."""
        ref = ref_of(body)
        old = self.registry.get(ref)
        view = self.feed.observe(event_type, body)
        if view is None:
            self.forget(ref)
            return
        refresh = view.annotations.get(self.settings.refresh_annotation)
        if ref not in self._refresh_seen:
            self._refresh_seen[ref] = refresh
            self.queue.add(ref, self._first_delay(view))
        elif (old is not None and old.generation != view.generation) or \
                refresh != self._refresh_seen[ref]:
            log.debug("%s changed (spec or refresh annotation): checking now", ref)
            if refresh != self._refresh_seen[ref]:
                self._refreshed.add(ref)
            self._refresh_seen[ref] = refresh
            self._failures.pop(ref, None)
            self.queue.add(ref)

    def on_object_change(self, ref: ObjectRef, snapshot: ObjectSnapshot) -> None:
        """A referenced Secret or ConfigMap changed: re-check its providers now."""
        for owner in self.objects.owners(ref):
            self._failures.pop(owner, None)
            self.queue.add(owner)

    def forget(self, ref: ProviderRef) -> None:
        """The provider is gone: drop it. Nothing is sent to its server."""
        self.feed.forget(ref)
        self.queue.forget(ref)
        self._failures.pop(ref, None)
        self._refresh_seen.pop(ref, None)
        self._refreshed.discard(ref)

    def _first_delay(self, view: ProviderView) -> float:
        status = view.status
        if status.observed_generation != view.generation or status.last_check is None:
            return 0.0
        return self._rng.uniform(0.0, view.spec.discovery.interval.total_seconds())

    # -- the workers --------------------------------------------------------------------------
    async def run(self) -> None:
        """Check providers with ``settings.workers`` workers until cancelled."""
        workers = [asyncio.create_task(self._worker(), name=f"checker {i}")
                   for i in range(self.settings.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self) -> None:
        while (ref := await self.queue.get()) is not None:
            delay: float | None = 0.0  # cancelled mid-check: check again as soon as we may
            try:
                delay = await self._guarded_check(ref)
            finally:
                self.queue.done(ref, delay if self.registry.get(ref) is not None else None)

    async def _guarded_check(self, ref: ProviderRef) -> float | None:
        try:
            return await self.check(ref)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug or the API server going away: retry later, never crash
            log.exception("check of %s failed; retrying", ref)
            view = self.registry.get(ref)
            return self._delay(ref, view, Retry.TRANSIENT) if view else None

    def _delay(self, ref: ProviderRef, view: ProviderView, retry: Retry) -> float:
        """The one place a check's outcome becomes the time of the next one."""
        failures = self._failures.get(ref, 0)
        if retry is Retry.TRANSIENT:
            self._failures[ref] = failures + 1
        else:
            self._failures.pop(ref, None)
        return next_delay(retry, failures, view.spec.discovery.interval.total_seconds(),
                          min_retry=self.settings.min_retry_seconds,
                          jitter=self.settings.jitter, rng=self._rng)

    # -- one check ----------------------------------------------------------------------------
    async def check(self, ref: ProviderRef) -> float | None:
        """Check ``ref`` once; the seconds until its next check (None: it is gone)."""
        view = self.registry.get(ref)
        if view is None:
            return None
        self.stats["checks"] += 1
        # A refresh asked for is answered with a write even when nothing changed: who asked
        # (a user, the relay's passive health) sees lastCheck move.
        refreshed = ref in self._refreshed
        self._refreshed.discard(ref)
        started = time.monotonic()
        resolved = await resolve_references(view, self.objects)
        found = endpoint_of(view.spec)
        endpoint = None if isinstance(found, InvalidEndpoint) else found
        result = await probe(
            ProbeRequest(view.spec, found, resolved.api_key, resolved.ca_pem,
                         (resolved.reason, resolved.message)),
            self.transports, self.settings.probe_body_limit)
        assessment = assess(result)
        now = self._wall()
        new = build_status(view.status, assessment, StatusInputs(
            generation=view.generation, now=now,
            chat_completions_url=endpoint.chat_completions_url if endpoint else None,
            models_url=endpoint.models_url if endpoint else None,
            credential_version=resolved.credential_version,
            latency_ms=result.models_call.latency_ms if result.models_call else None,
            verification_latency_ms=result.verify_call.latency_ms if result.verify_call else None,
        ))
        current = self.registry.get(ref)
        if current is None or current.uid != view.uid:
            return None  # deleted (or replaced) during the check: its result is void
        if refreshed or needs_write(view.status, new, heartbeat=self.settings.status_heartbeat,
                                    now=now):
            if not await self.applier.apply(view, new):
                return None
            self.stats["writes"] += 1
            for event in transitions(view.status, new):
                self.stats["events"] += 1
                await self.recorder.post(view, event)
        ready = assessment.ready
        log.info("checked %s in %.0f ms: Ready=%s reason=%s models=%d", ref,
                 (time.monotonic() - started) * 1000, ready.status, ready.reason,
                 len(assessment.models))
        return self._delay(ref, view, assessment.retry)
