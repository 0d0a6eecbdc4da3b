"""The store's user: admission and settlement for one request, and the failure mode.

:class:`QuotaGate` ties the pure quota logic to a counter store: :meth:`QuotaGate.admit`
reserves (raising the 429 of :func:`chatprovider.domain.quota.answers.refusal`),
:meth:`QuotaGate.settle` settles. When the store is unavailable (it raises
:class:`~chatprovider.counters.store.CounterStoreUnavailable`), ``fail_open`` decides:

* **fail closed** (``fail_open=False``): a request under a quota is refused with a 503
  (``quota_unavailable``, ``Retry-After: 1``); requests no quota governs are not affected. The
  limits hold whatever happens, at the price of availability;
* **fail open** (``fail_open=True``): the request is admitted without being counted (no
  rate-limit headers), and its settlement is dropped. Availability wins; what is used while the
  store is down is not charged.

Either way no request waits longer than the store's time-out, and the next request after the
store is back is counted again (counters already in it are kept; a restart without persistence
starts them from zero). A settlement that fails is dropped, logged, never raised: the answer
has been sent by then. An outage is logged when it starts and when it ends, not per request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from chatprovider.counters.store import CounterStore, CounterStoreUnavailable, mark_sent
from chatprovider.domain.quota.answers import rate_limit_headers, refusal, store_unavailable
from chatprovider.domain.quota.demand import Demand
from chatprovider.domain.quota.ledger import LEASE_SECONDS, Reservation, reserve
from chatprovider.domain.quota.limits import Limit

__all__ = ["Admission", "QuotaGate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted request: what to settle (None: nothing was counted) and the headers."""

    reservation: Reservation | None
    headers: dict[str, str] = field(default_factory=dict)


class QuotaGate:
    """Admits and settles requests against ``store``."""

    def __init__(self, store: CounterStore, *, fail_open: bool,
                 clock: Callable[[], float] = time.time,
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self.store = store
        self.fail_open = fail_open
        self._clock = clock
        self._lease_seconds = lease_seconds
        prefix = uuid.uuid4().hex
        self._leases = (f"{prefix}-{n}" for n in itertools.count())
        """Lease names, unique per request: this gate's random prefix and a serial number."""
        self._down = False
        """Whether the last call found the store unavailable (logged once per outage)."""

    def _unavailable(self, exc: CounterStoreUnavailable, what: str) -> None:
        if not self._down:
            log.warning("%s; %s until it is back", exc, what)
        self._down = True

    def _available(self) -> None:
        if self._down:
            log.warning("the quota counter store is available again (%r)", self.store)
        self._down = False

    async def admit(self, limits: Sequence[Limit], demand: Demand) -> Admission:
        """Reserve ``demand`` on every limit; raises OpenAIError (429 refused, 503 store
        unavailable and failing closed)."""
        if not limits:
            return Admission(None)
        now = self._clock()
        reservation = reserve(limits, demand, now, next(self._leases), self._lease_seconds)
        try:
            outcome = await self.store.reserve(reservation.charges, now)
        except CounterStoreUnavailable as exc:
            if self.fail_open:
                self._unavailable(exc, "admitting requests under a quota uncounted (fail open)")
                return Admission(None)
            self._unavailable(exc, "refusing requests under a quota (fail closed)")
            raise store_unavailable() from None
        self._available()
        if not outcome.admitted:
            raise refusal(reservation, outcome, now)
        return Admission(reservation, rate_limit_headers(reservation, outcome, now))

    async def settle(self, admission: Admission, charged: Demand,
                     sent: asyncio.Future[None] | None = None) -> bool:
        """Charge what was used instead of what was reserved; False if the store was
        unavailable (the settlement is then lost). ``sent``: as for
        :meth:`~chatprovider.counters.store.CounterStore.settle`."""
        if admission.reservation is None:
            mark_sent(sent)
            return True
        try:
            await self.store.settle(admission.reservation.settlement(charged), self._clock(),
                                    sent)
        except CounterStoreUnavailable as exc:
            self._unavailable(exc, "settlements are lost")
            return False
        self._available()
        return True
