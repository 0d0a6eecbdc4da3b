"""The counter store's interface, and its one error.

A store keeps integer counters and sets of leases (:mod:`chatprovider.domain.quota.ledger`) and
does three things, each atomically:

* :meth:`CounterStore.reserve`: check that every charge fits, and only then apply them all (or
  none): two reservations racing for the last room cannot both get it, across any number of
  relay processes sharing the store;
* :meth:`CounterStore.settle`: apply adjustments (refunds never below zero, lease releases);
* :meth:`CounterStore.read` and :meth:`CounterStore.scan`: current values, for headers and
  ``status.usage``.

Errors::

    CounterStoreUnavailable   the store could not be reached or did not answer in time
                              (the caller decides: fail open or closed, see gate.QuotaGate)

Anything else a store raises is a bug.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from chatprovider.domain.quota.ledger import Adjustment, Charge, Outcome

__all__ = ["CounterStore", "CounterStoreUnavailable", "mark_sent"]


class CounterStoreUnavailable(Exception):
    """The counter store cannot be reached (connection refused or lost, or a time-out).
    The message names the store's address, never a password."""


class CounterStore(Protocol):
    """Counters for quotas; ``now`` is seconds since the epoch (leases expire by it)."""

    @property
    def suspends(self) -> bool:
        """Whether its operations wait on I/O. False: each runs to its end without yielding to
        the event loop, so that no cancellation can interrupt it halfway."""
        ...

    async def reserve(self, charges: Sequence[Charge], now: float) -> Outcome:
        """Apply every charge if every one fits (:func:`~chatprovider.domain.quota.ledger.admit`),
        else none."""
        ...

    async def settle(self, adjustments: Sequence[Adjustment], now: float,
                     sent: asyncio.Future[None] | None = None) -> None:
        """Apply the adjustments; a counter never goes below zero, and a refund to a counter
        that expired is dropped. ``sent``, when given, is resolved as soon as the store applies
        them before any operation that reaches it later, from any client (the answer may go
        out then), and at the latest when this returns or raises."""
        ...

    async def read(self, keys: Sequence[str], now: float) -> list[int]:
        """The value of each counter (the number of live leases for a lease set; 0 if none)."""
        ...

    async def scan(self, prefix: str, now: float) -> dict[str, int]:
        """Every live counter whose key starts with ``prefix``, with its value."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def mark_sent(sent: asyncio.Future[None] | None) -> None:
    """Resolve a settlement's ``sent`` future (see :meth:`CounterStore.settle`), once."""
    if sent is not None and not sent.done():
        sent.set_result(None)
