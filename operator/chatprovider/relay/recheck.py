"""Asking the operator to re-check a provider now: the relay sets the refresh annotation.

The operator re-checks a ChatProvider at once when the value of its refresh annotation
(``ai.chatprovider.dev/refresh`` by default) changes, whoever changes it; the relay does so with
a JSON merge patch that holds nothing but that annotation (and the provider's ``uid``, as a
precondition: a provider deleted and created again under the same name is not touched). The
value says when and why (``2026-12-03T16:45:01.123456Z relay ejected: unauthorized``), never a
key. The relay needs ``patch`` on ``chatproviders`` for it; the chart's admission policy lets
the relay's ServiceAccount change that annotation only (docs/security.md).

At most one patch per provider every ``interval`` seconds (per relay process): a request that
comes sooner is made when the interval is over, once, whatever came in between. A patch that
fails (no RBAC, API server away) is logged and not retried: the ejection's probation bounds the
harm.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable

from chatprovider.api.v1alpha1 import GROUP, VERSION
from chatprovider.domain.routing import ProviderRef
from chatprovider.kube.client import ApiError, KubeClient

__all__ = ["RecheckSignal"]

log = logging.getLogger(__name__)


class RecheckSignal:
    """Patches ``annotation`` on a provider, rate-limited per provider."""

    def __init__(self, client: KubeClient, annotation: str, interval: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._annotation = annotation
        self._interval = interval
        self._clock = clock
        self._last: dict[ProviderRef, float] = {}
        self._pending: dict[ProviderRef, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self, key: ProviderRef, uid: str, why: str) -> None:
        """Ask for a re-check of ``key`` (with ``uid``) because of ``why`` (no secret in it)."""
        if key in self._pending:
            return  # one is due already
        now = self._clock()
        wait = self._last.get(key, -self._interval) + self._interval - now
        if wait > 0:
            loop = asyncio.get_running_loop()
            self._pending[key] = loop.call_later(wait, self._fire, key, uid, why)
            return
        self._fire(key, uid, why)

    def _fire(self, key: ProviderRef, uid: str, why: str) -> None:
        self._pending.pop(key, None)
        self._last[key] = self._clock()
        task = asyncio.get_running_loop().create_task(self._patch(key, uid, why),
                                                      name=f"re-check {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _patch(self, key: ProviderRef, uid: str, why: str) -> None:
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {"metadata": {"uid": uid,
                             "annotations": {self._annotation: f"{when} relay {why}"}}}
        path = (f"/apis/{GROUP}/{VERSION}/namespaces/{key.namespace}/chatproviders/"
                f"{key.name}")
        try:
            await self._client.merge_patch(path, body)
            log.info("asked the operator to re-check %s (%s)", key, why)
        except (ApiError, OSError) as exc:
            log.warning("could not ask the operator to re-check %s (annotation %s): %s; it "
                        "returns to routing after its probation", key, self._annotation, exc)

    def forget(self, key: ProviderRef) -> None:
        handle = self._pending.pop(key, None)
        if handle is not None:
            handle.cancel()
        self._last.pop(key, None)

    async def close(self) -> None:
        """Cancel what is due later, and let the patches under way end (bounded by the
        client's timeout)."""
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
