"""The operator's work queue: when to check each provider, and what a check writes.

Providers are scheduled individually (interval plus random jitter), woken at once by a spec
change, the refresh annotation, or a change of a Secret/ConfigMap they reference. A bounded pool
of workers runs the checks; one provider is never checked twice at the same time. Failures are
mapped to retry semantics in exactly one place (:meth:`Reconciler._next_delay`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

from chatprovider.api.v1alpha1 import GROUP, PLURAL, VERSION
from chatprovider.controller.events import EventRecorder
from chatprovider.controller.prober import ProbeRequest, probe
from chatprovider.controller.references import resolve_references
from chatprovider.domain.durations import parse_duration
from chatprovider.domain.endpoint import InvalidEndpoint, resolve_endpoint
from chatprovider.domain.probe import Retry, assess
from chatprovider.domain.status import StatusInputs, build_status, needs_write, transitions
from chatprovider.feed import Feed, ref_of
from chatprovider.kube.client import ApiError, KubeClient
from chatprovider.kube.objects import ObjectSnapshot
from chatprovider.registry import ObjectRef, ProviderRef, ProviderView
from chatprovider.settings import OperatorSettings
from chatprovider.upstream.transport import Transports

__all__ = ["Reconciler"]

log = logging.getLogger(__name__)


def _rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: Any) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Reconciler:
    """Owns the schedule of checks. Feed it watch events with :meth:`observe`; run :meth:`run`."""

    def __init__(self, settings: OperatorSettings, client: KubeClient, feed: Feed,
                 transports: Transports, recorder: EventRecorder,
                 rng: random.Random | None = None) -> None:
        self.settings, self.client, self.feed = settings, client, feed
        self.registry, self.objects = feed.registry, feed.objects
        self.transports, self.recorder = transports, recorder
        self._rng = rng or random.Random()
        self._heap: list[tuple[float, int, ProviderRef]] = []
        self._due: dict[ProviderRef, float] = {}
        self._seq = 0
        self._wake = asyncio.Event()
        self._running: set[ProviderRef] = set()
        self._again: set[ProviderRef] = set()
        self._failures: dict[ProviderRef, int] = {}
        self._refresh_seen: dict[ProviderRef, str | None] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.workers)
        self.stats = {"checks": 0, "writes": 0, "events": 0}

    # -- inputs -------------------------------------------------------------------------------
    def observe(self, event_type: str, body: Mapping[str, Any]) -> None:
        """A watch event for a ChatProvider (ADDED/MODIFIED/DELETED, or None when listed)."""
        ref = ref_of(body)
        old = self.registry.get(ref)
        view = self.feed.observe(event_type, body)
        if view is None:
            self.forget(ref)
            return
        refresh = view.annotations.get(self.settings.refresh_annotation)
        if ref not in self._refresh_seen:
            self._refresh_seen[ref] = refresh
            delay = self._initial_delay(view)
            log.debug("first sight of %s: next check in %.1fs", ref, delay)
            self._schedule(ref, delay)
        elif (old is not None and old.generation != view.generation) or \
                refresh != self._refresh_seen[ref]:
            log.debug("%s changed (spec or refresh annotation): checking now", ref)
            self._refresh_seen[ref] = refresh
            self._failures.pop(ref, None)
            self._schedule(ref, 0.0)

    def on_object_change(self, ref: ObjectRef, snapshot: ObjectSnapshot) -> None:
        """A referenced Secret or ConfigMap changed: re-check its providers now."""
        for owner in self.objects.owners(ref):
            self._failures.pop(owner, None)
            self._schedule(owner, 0.0)

    def forget(self, ref: ProviderRef) -> None:
        """The provider is gone: drop it. Nothing is sent to its server."""
        self.feed.forget(ref)
        self._due.pop(ref, None)
        self._failures.pop(ref, None)
        self._refresh_seen.pop(ref, None)
        self._again.discard(ref)

    def _initial_delay(self, view: ProviderView) -> float:
        """After a restart, a provider whose status is current is not re-checked early."""
        status = view.status
        if status.observed_generation != view.generation or status.last_check is None:
            return 0.0
        last = _parse_time(status.last_check.time)
        if last is None:
            return 0.0
        return max(0.0, last + self._interval(view) - time.time())

    def _interval(self, view: ProviderView) -> float:
        base = parse_duration(view.spec.discovery.interval)
        return base * (1.0 + self._rng.uniform(0.0, self.settings.jitter))

    def _schedule(self, ref: ProviderRef, delay: float) -> None:
        if ref in self._running:
            if delay == 0.0:
                self._again.add(ref)
            return
        due = time.monotonic() + delay
        current = self._due.get(ref)
        if current is not None and current <= due and delay > 0.0:
            return
        self._due[ref] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, ref))
        self._wake.set()

    # -- the loop -----------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                due, _, ref = heapq.heappop(self._heap)
                if self._due.get(ref) != due:
                    continue  # superseded by a later schedule() or forgotten
                del self._due[ref]
                await self._slots.acquire()
                self._running.add(ref)
                task = asyncio.create_task(self._guarded_check(ref), name=f"check {ref}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            timeout = (self._heap[0][0] - time.monotonic()) if self._heap else None
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _guarded_check(self, ref: ProviderRef) -> None:
        delay: float | None = None
        try:
            delay = await self.check(ref)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug or the API server going away: retry later, never crash
            log.exception("check of %s failed; retrying", ref)
            delay = self._backoff(ref)
        finally:
            self._running.discard(ref)
            self._slots.release()
        if ref in self._again:
            self._again.discard(ref)
            delay = 0.0
        if delay is not None and self.registry.get(ref) is not None:
            self._schedule(ref, delay)

    def _backoff(self, ref: ProviderRef) -> float:
        n = self._failures.get(ref, 0)
        self._failures[ref] = n + 1
        view = self.registry.get(ref)
        cap = parse_duration(view.spec.discovery.interval) if view else 300.0
        return min(cap, self.settings.min_retry_seconds * (2.0 ** n)) * self._rng.uniform(0.9, 1.1)

    def _next_delay(self, ref: ProviderRef, view: ProviderView, retry: Retry) -> float:
        """The one place failures become retry semantics (see chatprovider.domain.probe)."""
        if retry is Retry.TRANSIENT:
            return self._backoff(ref)
        self._failures.pop(ref, None)
        return self._interval(view)  # healthy, or permanent: wait for a change or the interval

    # -- one check ----------------------------------------------------------------------------
    async def check(self, ref: ProviderRef) -> float | None:
        view = self.registry.get(ref)
        if view is None:
            return None
        self.stats["checks"] += 1
        resolved = await resolve_references(view, self.objects)
        result = await probe(
            ProbeRequest(view.spec, resolved.api_key, resolved.ca_pem,
                         (resolved.reason, resolved.message)),
            self.transports, self.settings.probe_body_limit)
        assessment = assess(result)
        chat_url: str | None = None
        models_url: str | None = None
        try:
            endpoint = resolve_endpoint(view.spec.endpoint)
            chat_url, models_url = endpoint.chat_completions_url, endpoint.models_url
        except InvalidEndpoint:
            pass
        now = time.time()
        old = view.status.model_dump(by_alias=True, exclude_none=True)
        new = build_status(old, assessment, StatusInputs(
            generation=view.generation, now=_rfc3339(now), chat_completions_url=chat_url,
            models_url=models_url, credential_version=resolved.credential_version,
            latency_ms=result.models_call.latency_ms if result.models_call else None,
            verification_latency_ms=result.verify_call.latency_ms if result.verify_call else None,
        ))
        last = _parse_time(view.status.last_check.time) if view.status.last_check else None
        interval = parse_duration(view.spec.discovery.interval)
        if needs_write(old, new, refresh_after=interval / 2,
                       age_of_last_check=None if last is None else now - last):
            if not await self._write(view, new):
                return None
            for event in transitions(old, new):
                self.stats["events"] += 1
                await self.recorder.post(view, event)
        ready = assessment.ready
        log.info("checked %s: Ready=%s reason=%s models=%d", ref, ready.status, ready.reason,
                 len(assessment.models))
        return self._next_delay(ref, view, assessment.retry)

    async def _write(self, view: ProviderView, status: dict[str, Any]) -> bool:
        ns, name = view.ref.namespace, view.ref.name
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{name}/status"
        try:
            await self.client.merge_patch(path, {"metadata": {"uid": view.uid}, "status": status})
        except ApiError as exc:
            if exc.not_found or exc.conflict:  # deleted (or replaced) meanwhile
                return False
            raise
        self.stats["writes"] += 1
        return True
