"""Leader election with a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does.

Every operator replica watches ChatProviders (so a new leader starts warm); only the leader
checks them and writes their status. A replica holds the Lease by renewing it every
``retry_period``; another takes it over only after seeing no renewal for ``lease_duration``
(measured on its own monotonic clock, so clocks need not agree). The leader steps down when it
could not renew for ``renew_deadline`` (shorter than ``lease_duration``), so two leaders never
act at once: the old one has stopped before the new one may start. :meth:`LeaderElector.leading`
is checked before each status write as a last guard. On a clean stop the leader releases the
Lease, so that a rolling update hands over at once instead of after ``lease_duration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from chatprovider.domain.status import rfc3339_micro
from chatprovider.kube.client import ApiError, KubeClient

__all__ = ["LeaderElector", "LeaseTiming"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseTiming:
    """client-go's defaults: a leader that dies is replaced within ``lease_duration`` plus one
    ``retry_period``."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("the lease timing needs retry_period < renew_deadline < "
                             "lease_duration")


class LeaderElector:
    """Campaigns for the Lease ``namespace/name`` as ``identity``; see the module docstring."""

    def __init__(self, client: KubeClient, namespace: str, name: str, identity: str,
                 timing: LeaseTiming | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self._name = name
        self.identity = identity
        self.timing = timing or LeaseTiming()
        self._clock = clock
        self._renewed_at: float | None = None  # our clock, when our last renewal succeeded
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0  # our clock, when _observed last changed
        self.transitions = 0

    @property
    def leading(self) -> bool:
        """Whether this replica may act now: it renewed within ``renew_deadline``."""
        return self._renewed_at is not None and \
            self._clock() - self._renewed_at < self.timing.renew_deadline

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]], stop: asyncio.Event) -> None:
        """Campaign until ``stop``; while leading, run ``lead()`` (cancelled when leadership is
        lost or on stop). Returns after releasing the Lease, if held."""
        while not stop.is_set():
            if await self._try_acquire_or_renew():
                log.info("%s became the leader (Lease %s)", self.identity, self._name)
                await self._lead(lead, stop)
                if stop.is_set():
                    break
                log.warning("%s lost the leadership (Lease %s)", self.identity, self._name)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timing.retry_period):
                    await stop.wait()
        await self._release()

    async def _lead(self, lead: Callable[[], Coroutine[Any, Any, None]],
                    stop: asyncio.Event) -> None:
        task = asyncio.create_task(lead(), name="leading")
        try:
            while self.leading and not stop.is_set() and not task.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.timing.retry_period):
                        await stop.wait()
                if not stop.is_set():
                    await self._try_acquire_or_renew()
        finally:
            self._renewed_at = None if not stop.is_set() else self._renewed_at
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the Lease --------------------------------------------------------------------------
    async def _try_acquire_or_renew(self) -> bool:
        now = dt.datetime.now(dt.UTC)
        try:
            lease = await self._client.get(f"{self._path}/{self._name}")
        except ApiError as exc:
            if not exc.not_found:
                log.info("could not read Lease %s: %s", self._name, exc.status)
                return False
            return await self._create(now)
        except Exception as exc:  # noqa: BLE001 - the API server is away: try again later
            log.info("could not read Lease %s: %s", self._name, type(exc).__name__)
            return False
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        observed = (holder, str(spec.get("renewTime") or ""))
        if observed != self._observed:
            self._observed, self._observed_at = observed, self._clock()
        duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_duration)
        free = not holder or self._clock() - self._observed_at >= duration
        if holder != self.identity and not free:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder != self.identity:
            transitions += 1
            spec["acquireTime"] = rfc3339_micro(now)
        spec.update({"holderIdentity": self.identity, "renewTime": rfc3339_micro(now),
                     "leaseDurationSeconds": int(self.timing.lease_duration),
                     "leaseTransitions": transitions})
        lease["spec"] = spec
        try:  # the resourceVersion makes this a compare-and-swap: one taker wins
            await self._client.replace(f"{self._path}/{self._name}", lease)
        except Exception as exc:  # noqa: BLE001 - conflict, or the API server is away
            log.debug("could not update Lease %s: %s", self._name, exc)
            return False
        return self._held(transitions)

    async def _create(self, now: dt.datetime) -> bool:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self._name},
                "spec": {"holderIdentity": self.identity,
                         "leaseDurationSeconds": int(self.timing.lease_duration),
                         "acquireTime": rfc3339_micro(now), "renewTime": rfc3339_micro(now),
                         "leaseTransitions": 0}}
        try:
            await self._client.create(self._path, body)
        except Exception as exc:  # noqa: BLE001 - another replica created it first
            log.debug("could not create Lease %s: %s", self._name, exc)
            return False
        return self._held(0)

    def _held(self, transitions: int) -> bool:
        self._renewed_at = self._clock()
        self.transitions = transitions
        return True

    async def _release(self) -> None:
        """Give the Lease up (a clean stop), so that another replica takes over at once."""
        if self._renewed_at is None:
            return
        self._renewed_at = None
        try:
            lease = await self._client.get(f"{self._path}/{self._name}")
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            spec.update({"holderIdentity": "", "leaseDurationSeconds": 1,
                         "renewTime": rfc3339_micro(dt.datetime.now(dt.UTC))})
            await self._client.replace(f"{self._path}/{self._name}", lease)
            log.info("%s released the Lease %s", self.identity, self._name)
        except Exception as exc:  # noqa: BLE001 - best effort: the Lease then simply expires
            log.info("could not release Lease %s: %s", self._name, type(exc).__name__)
