"""Reservations against counters, and their settlement: what a counter store is asked (pure).

Admission by reservation: a request is admitted only if *every* applicable limit has room for
its reservation, and then all of them are charged at once (:class:`Charge`; a store does the
check and the charge atomically, :func:`admit` is the rule). After the answer the reservation
is settled with what was really used (:class:`Adjustment`): the difference is refunded or charged
extra on the same counters, a counter never goes below zero, and the concurrency lease is
released.

Counters are integers that expire with their window (:attr:`Charge.expires_at`: the window's
end plus :data:`GRACE`, so that a settlement just after the boundary still finds its counter).
The concurrency limit is a set of leases, one per request in flight, each with its own expiry
(:data:`LEASE_SECONDS` after admission by default), so that a relay that dies mid-request holds
no slot for ever.

Only a zero charge never refuses: a request that reserves no completion tokens (embeddings)
passes a completion-token limit even when an overshooting settlement filled it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chatprovider.domain.quota.demand import Demand
from chatprovider.domain.quota.limits import Limit, Metric

__all__ = ["GRACE", "LEASE_SECONDS", "Adjustment", "Charge", "Outcome", "Reservation", "admit",
           "reserve"]

#: Seconds a window's counter outlives the window.
GRACE = 60.0
#: Seconds a concurrency lease lasts unless released (the longest request expected).
LEASE_SECONDS = 900.0


@dataclass(frozen=True, slots=True)
class Charge:
    """Add ``amount`` to the counter ``key`` if it stays within ``capacity``."""

    key: str
    amount: int
    capacity: int
    expires_at: float
    """When the counter may vanish (seconds since the epoch)."""
    lease: str | None = None
    """For the concurrency limit: the key is a set of leases and this one is added (``amount``
    is 1); it expires at ``expires_at``."""


@dataclass(frozen=True, slots=True)
class Adjustment:
    """Add ``delta`` (negative: a refund) to the counter ``key``, not below zero; or remove the
    ``lease`` from it."""

    key: str
    delta: int
    expires_at: float
    lease: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """A store's answer to a reservation."""

    admitted: bool
    used: tuple[int, ...]
    """Each charge's counter: after the charge when admitted, as found when refused."""
    refused: int | None = None
    """The index of the first charge that did not fit."""


def admit(current: Sequence[int], charges: Sequence[Charge]) -> Outcome:
    """The admission rule over the counters' ``current`` values: every charge must fit."""
    for i, (value, charge) in enumerate(zip(current, charges, strict=True)):
        if charge.amount > 0 and value + charge.amount > charge.capacity:
            return Outcome(False, tuple(current), i)
    return Outcome(True, tuple(v + c.amount for v, c in zip(current, charges, strict=True)))


def _amount(metric: Metric, demand: Demand) -> int:
    if metric is Metric.TOKENS:
        return demand.total
    if metric is Metric.PROMPT_TOKENS:
        return demand.prompt
    if metric is Metric.COMPLETION_TOKENS:
        return demand.completion
    return 1


@dataclass(frozen=True, slots=True)
class Reservation:
    """What one request reserves: its limits, the charges made for them, its demand."""

    limits: tuple[Limit, ...]
    charges: tuple[Charge, ...]
    demand: Demand
    admitted_at: float

    def settlement(self, charged: Demand) -> list[Adjustment]:
        """The adjustments that turn the reservation into ``charged``, and release the lease."""
        out = []
        for limit, charge in zip(self.limits, self.charges, strict=True):
            if charge.lease is not None:
                out.append(Adjustment(charge.key, -1, charge.expires_at, charge.lease))
                continue
            delta = _amount(limit.metric, charged) - charge.amount
            if limit.metric is not Metric.REQUESTS and delta:
                out.append(Adjustment(charge.key, delta, charge.expires_at))
        return out


def reserve(limits: Sequence[Limit], demand: Demand, now: float, lease: str,
            lease_seconds: float = LEASE_SECONDS) -> Reservation:
    """The charges a request with ``demand`` makes on ``limits`` at ``now``; ``lease`` (unique
    per request) names its slot in a concurrency limit."""
    charges = []
    for limit in limits:
        key, resets = limit.key(now), limit.resets_at(now)
        if resets is None:
            charges.append(Charge(key, 1, limit.capacity, now + lease_seconds, lease))
        else:
            charges.append(Charge(key, _amount(limit.metric, demand), limit.capacity,
                                  resets + GRACE))
    return Reservation(tuple(limits), tuple(charges), demand, now)
