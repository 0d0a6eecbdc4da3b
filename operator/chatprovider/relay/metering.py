"""Quotas on the request path: admission before a request goes upstream, settlement after.

For one attempt at one provider, :meth:`Metering.metered` finds the limits that govern the
caller there (:func:`~chatprovider.domain.quota.limits.applicable_limits` over the ChatQuotas of
the provider's namespace, selected by name or by the provider's labels), reserves the request's
estimate through :class:`~chatprovider.counters.gate.QuotaGate` (which raises the 429s, and the
503 ``quota_unavailable`` when failing closed), and settles once the answer is over:

=====================================  ========================================================
how the attempt ended                   what is charged (tokens; the request always counts)
=====================================  ========================================================
an answer (2xx) with ``usage``          that usage
an answer without ``usage``             the reservation
a stream that finished                  its last events' usage, else the reservation
a stream cut short (client gone,        what was relayed (:func:`~chatprovider.domain.quota.
upstream lost, ended by the relay)      demand.cut_stream_demand`)
an error before any answer              nothing
the relay died                          the reservation (nothing settles it)
the store did not answer the            possibly the reservation (Redis may have run it; 503
reservation in time                     or relayed uncounted, by the failure mode)
the store did not answer the            what was used, or the reservation (the settlement was
settlement in time                      sent once, and Redis may not have run it)
=====================================  ========================================================

The rate-limit headers of the admission go on the attempt's answer whatever it is
(``Exchange.quota_headers``: a 200, a stream's response headers, an error). A chat or
completions stream whose caller did not ask for ``stream_options.include_usage`` is asked for
it upstream and the usage is hidden from the caller (:mod:`chatprovider.domain.stream_usage`).

The limits of a (provider, caller) pair are worked out once and kept until a ChatQuota or a
provider changes (at most :data:`CACHED_PAIRS` pairs; the cache starts over beyond).

A settlement runs to its end even when the client's disconnect cancels the handler. In memory
it cannot be interrupted (nothing in it waits), and runs in the handler. On a store that waits
on I/O (Redis) it is a task of its own, and the handler waits only until the settlement is
sent: from then on the store applies it before anything that reaches it later, so the
caller's next request, on any replica, is admitted against the settled counters; the
confirmation arrives while the answer is on its way (one round trip fewer on the critical
path). :meth:`Metering.drain` waits for the confirmations still due at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chatprovider.counters.gate import Admission, QuotaGate
from chatprovider.counters.store import mark_sent
from chatprovider.domain.apis import Operation
from chatprovider.domain.quota.demand import (
    Demand,
    ReservationPolicy,
    charged_demand,
    cut_stream_demand,
    demand_of,
)
from chatprovider.domain.quota.limits import Limit, applicable_limits
from chatprovider.domain.quota.subjects import CallerIdentity
from chatprovider.domain.request_body import RequestBody
from chatprovider.domain.routing import ProviderRef
from chatprovider.domain.stream_usage import request_usage
from chatprovider.quotas import QuotaIndex
from chatprovider.relay.catalog import CatalogCache
from chatprovider.relay.exchange import Exchange

__all__ = ["CACHED_PAIRS", "Metering", "attempt_charge"]

log = logging.getLogger(__name__)

#: How many (provider, caller) pairs' limits are kept between changes of quotas or providers.
CACHED_PAIRS = 4096


def attempt_charge(reserved: Demand, exchange: Exchange, answered: bool) -> Demand:
    """What an attempt that ``reserved`` is charged, by how it ended (the table above):
    ``answered`` says whether the handler returned an answer rather than raising."""
    if exchange.prepared and not exchange.completed:
        return cut_stream_demand(reserved, exchange.usage, exchange.relayed_tokens)
    return charged_demand(reserved, exchange.usage, answered=answered or exchange.prepared)


class Metering:
    """The quotas of one relay: its index of ChatQuotas, and the gate to the counters."""

    def __init__(self, quotas: QuotaIndex, gate: QuotaGate, catalog: CatalogCache,
                 policy: ReservationPolicy | None = None) -> None:
        self._quotas, self._gate, self._catalog = quotas, gate, catalog
        self._policy = policy or ReservationPolicy()
        self._settling: set[asyncio.Task[bool]] = set()
        self._versions = (-1, -1)
        self._limits: dict[tuple[ProviderRef, str, tuple[str, ...]], tuple[Limit, ...]] = {}

    def limits(self, caller: CallerIdentity, provider: ProviderRef) -> tuple[Limit, ...]:
        """The limits ``caller`` is held to at ``provider`` (empty: no quota governs it)."""
        versions = (self._quotas.version, self._catalog.version)
        if versions != self._versions or len(self._limits) >= CACHED_PAIRS:
            self._limits.clear()
            self._versions = versions
        pair = (provider, caller.username, tuple(caller.groups))
        found = self._limits.get(pair)
        if found is None:
            view = self._catalog.view(provider)
            found = self._limits[pair] = tuple(applicable_limits(
                self._quotas.in_namespace(provider.namespace), caller, provider,
                view.labels if view is not None else {}))
        return found

    @asynccontextmanager
    async def metered(self, caller: CallerIdentity, provider: ProviderRef,
                      operation: Operation, body: RequestBody,
                      exchange: Exchange) -> AsyncIterator[RequestBody]:
        """Admit one attempt of ``caller`` at ``provider`` (raises OpenAIError 429/503), yield
        the body to send upstream, and settle when the attempt is over."""
        exchange.quota_headers, exchange.hide_usage = {}, False
        limits = self.limits(caller, provider)
        if not limits:
            yield body
            return
        demand = demand_of(operation, body.members, self._policy)
        admission = await self._gate.admit(limits, demand)
        if admission.reservation is None:  # failing open: uncounted
            yield body
            return
        exchange.quota_headers = dict(admission.headers)
        sent = request_usage(operation, body)
        exchange.hide_usage = sent is not None
        answered = False
        try:
            yield sent or body
            answered = True
        finally:
            await self._settle(admission, attempt_charge(demand, exchange, answered))

    async def _settle(self, admission: Admission, charged: Demand) -> None:
        if not self._gate.store.suspends:
            await self._gate.settle(admission, charged)
            return
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(self._gate.settle(admission, charged, sent))
        self._settling.add(task)
        task.add_done_callback(self._settled)
        task.add_done_callback(lambda _: mark_sent(sent))
        await asyncio.shield(sent)

    def _settled(self, task: asyncio.Task[bool]) -> None:
        self._settling.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("a settlement failed (%s: %s); its counters keep the reservation",
                      type(exc).__name__, exc)

    async def drain(self) -> None:
        """Wait for the settlements still running (at shutdown)."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
