"""Writing the ChatQuotas' status: every ``quota_status_interval`` seconds, while this replica
leads.

Each pass lists the ChatQuotas in scope, takes the labels of the providers in their namespaces
from the watched :class:`~chatprovider.registry.Registry` (not from a list of every
ChatProvider, which at 10,000 of them was a large share of the API server's work and the
operator's largest allocation), reads each quota's counters from the counter store (``scan``),
builds the status (:func:`chatprovider.domain.quota.status.quota_status`) and server-side
applies it with the operator's field manager, only when it says something new. So a quota's
status is written at most once per interval, and not at all while nothing changes.

Where usage comes from (``UsageReported``):

* **Redis** (``quota_redis_url``): the counters every relay replica shares;
* **the embedded relay's memory** (no Redis, ``chatprovider run`` with its relay): the counters
  of this operator process, which the relay in it charges; with several operator replicas each
  has its own, and the leader reports its own only;
* **a separate relay's memory** (no Redis, ``--no-relay``): the operator cannot read another
  process's memory; ``usage`` stays empty and ``UsageReported`` is False,
  ``CountersInRelayMemory``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from chatprovider.api.quota import QUOTA_KIND, QUOTA_PLURAL, ChatQuota, ChatQuotaStatus
from chatprovider.api.v1alpha1 import GROUP, VERSION
from chatprovider.controller.status import apply_status
from chatprovider.counters.store import CounterStore, CounterStoreUnavailable
from chatprovider.domain.quota.limits import Quota
from chatprovider.domain.quota.status import UsageReading, needs_quota_write, quota_status
from chatprovider.kube.client import ApiError, KubeClient
from chatprovider.registry import Registry

__all__ = ["UNREADABLE", "QuotaStatusWriter"]

log = logging.getLogger(__name__)

#: ``UsageReported``'s message when the counters are in a separate relay's memory.
UNREADABLE = ("the counters are in the memory of each relay process (a separate relay, no "
              "quotas.redis.url), which the operator cannot read; set quotas.redis.url or "
              "quotas.redis.deploy to report usage")
_PAGE = "500"


class QuotaStatusWriter:
    """Keeps the status of the ChatQuotas in ``namespaces`` (empty: all) current.

    ``store`` is where the counters are read (None: they cannot be, see :data:`UNREADABLE`);
    ``source`` names it in ``UsageReported``'s message; ``registry`` holds the providers in
    scope (the watch's; a pass should start only once it has listed them); ``may_write`` (the
    leader election) is asked right before each write."""

    def __init__(self, client: KubeClient, namespaces: tuple[str, ...],
                 store: CounterStore | None, registry: Registry, *, interval: float,
                 source: str, fail_open: bool, may_write: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._namespaces = namespaces
        self._store = store
        self._registry = registry
        self._interval = interval
        self._source = source
        self._fail_open = fail_open
        self._may_write = may_write
        self._clock = clock
        self.writes = 0
        """Statuses written so far (a pass that changes nothing adds none)."""
        self.passes = 0
        """Passes completed so far."""
        self._down: str | None = None
        """The store's error in this pass: the other quotas do not wait for it again."""
        self._counters: dict[str, int] | None = None
        """The store's counters in this pass."""

    async def run(self) -> None:
        """A pass every interval, until cancelled (when leadership is lost or on stop). A
        failure is logged as a warning when it starts (or changes), not at every pass."""
        failed: str | None = None
        while True:
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the API server is away: next interval
                failure = f"{exc.status} {exc.reason}" if isinstance(exc, ApiError) else \
                    type(exc).__name__
                (log.warning if failure != failed else log.debug)(
                    "could not update the ChatQuotas' status: %s", failure)
                failed = failure
            else:
                failed = None
            await asyncio.sleep(self._interval)

    async def sync(self) -> int:
        """One pass over every quota in scope; returns how many statuses it wrote."""
        quotas = await self._list(QUOTA_PLURAL)
        namespaces = {str((body.get("metadata") or {}).get("namespace", "")) for body in quotas}
        providers: dict[str, dict[str, Mapping[str, str]]] = {}
        for view in self._registry if namespaces else ():
            if view.ref.namespace in namespaces:
                providers.setdefault(view.ref.namespace, {})[view.ref.name] = view.labels
        written, self._down, self._counters = 0, None, None
        now = self._clock()
        for body in quotas:
            written += await self._one(body, providers, now)
        self._counters = None
        self.passes += 1
        return written

    async def _one(self, body: dict[str, Any],
                   providers: Mapping[str, Mapping[str, Mapping[str, str]]], now: float) -> int:
        meta = body.get("metadata") or {}
        try:
            resource = ChatQuota.model_validate(body)
        except ValidationError as exc:  # the CRD validates; an older schema's object may not
            log.warning("ChatQuota %s/%s does not validate (%d errors); its status is left as it"
                        " is", meta.get("namespace"), meta.get("name"), exc.error_count())
            return 0
        quota = Quota.of(resource)
        reading = await self._read(now)
        new = quota_status(quota, int(meta.get("generation") or 0), resource.status,
                           providers.get(quota.namespace, {}), reading, now)
        if not needs_quota_write(resource.status, new):
            return 0
        return int(await self._apply(quota, new))

    async def _read(self, now: float) -> UsageReading:
        """Every quota's counters, read once per pass (one SCAN of the store's keys rather
        than one per quota; ``usage_report`` picks each quota's by its prefix)."""
        if self._store is None:
            return UsageReading(unreadable=UNREADABLE)
        if self._counters is None and self._down is None:
            try:
                self._counters = await self._store.scan("", now)
            except CounterStoreUnavailable as exc:
                self._down = str(exc)
        if self._down is not None:
            return UsageReading(unavailable=self._down, fail_open=self._fail_open)
        return UsageReading(counters=self._counters, source=self._source)

    async def _apply(self, quota: Quota, status: ChatQuotaStatus) -> bool:
        if not self._may_write() or not await apply_status(
                self._client, QUOTA_KIND, QUOTA_PLURAL, quota.namespace, quota.name, status):
            return False
        self.writes += 1
        return True

    async def _list(self, plural: str) -> list[dict[str, Any]]:
        """Every object of ``plural`` in scope (paged)."""
        base = f"/apis/{GROUP}/{VERSION}"
        paths = [f"{base}/namespaces/{ns}/{plural}" for ns in self._namespaces] or \
            [f"{base}/{plural}"]
        items: list[dict[str, Any]] = []
        for path in paths:
            params = {"limit": _PAGE}
            while True:
                page = await self._client.get(path, params)
                items += page.get("items") or []
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    break
                params = {"limit": _PAGE, "continue": str(token)}
        return items
