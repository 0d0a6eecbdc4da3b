"""Counters in the relay's memory: exact for one relay process (one replica).

Every operation runs without awaiting, so on one event loop it is atomic. Expired counters and
leases are dropped as time passes (a heap of expiries, swept on each call), so memory holds only
the live windows.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

from chatprovider.counters.store import mark_sent
from chatprovider.domain.quota.ledger import Adjustment, Charge, Outcome, admit

__all__ = ["MemoryCounterStore"]


@dataclass
class _Entry:
    value: int = 0
    expires_at: float = 0.0
    leases: dict[str, float] = field(default_factory=dict)


class MemoryCounterStore:
    """A :class:`~chatprovider.counters.store.CounterStore` in a dict."""

    suspends = False

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def _sweep(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, key = heapq.heappop(self._expiries)
            entry = self._entries.get(key)
            if entry is None:
                continue
            if entry.leases:
                entry.leases = {k: t for k, t in entry.leases.items() if t > now}
                if entry.leases:
                    heapq.heappush(self._expiries, (max(entry.leases.values()), key))
                    continue
                del self._entries[key]
            elif entry.expires_at <= now:
                del self._entries[key]

    def _value(self, key: str, now: float) -> int:
        entry = self._entries.get(key)
        if entry is None or entry.expires_at <= now:
            return 0
        if entry.leases:
            return sum(1 for t in entry.leases.values() if t > now)
        return entry.value

    def _expire(self, key: str, entry: _Entry, at: float) -> None:
        if at > entry.expires_at:
            entry.expires_at = at
            heapq.heappush(self._expiries, (at, key))

    async def reserve(self, charges: Sequence[Charge], now: float) -> Outcome:
        self._sweep(now)
        outcome = admit([self._value(c.key, now) for c in charges], charges)
        if outcome.admitted:
            for charge in charges:
                entry = self._entries.setdefault(charge.key, _Entry())
                if charge.lease is not None:
                    entry.leases = {k: t for k, t in entry.leases.items() if t > now}
                    entry.leases[charge.lease] = charge.expires_at
                else:
                    entry.value = self._value(charge.key, now) + charge.amount
                self._expire(charge.key, entry, charge.expires_at)
        return outcome

    async def settle(self, adjustments: Sequence[Adjustment], now: float,
                     sent: asyncio.Future[None] | None = None) -> None:
        self._sweep(now)
        for adjustment in adjustments:
            entry = self._entries.get(adjustment.key)
            if adjustment.lease is not None:
                if entry is not None:
                    entry.leases.pop(adjustment.lease, None)
                continue
            if entry is not None and entry.expires_at > now:
                entry.value = max(entry.value + adjustment.delta, 0)
            elif adjustment.delta > 0 and adjustment.expires_at > now:
                entry = self._entries[adjustment.key] = _Entry(adjustment.delta)
                self._expire(adjustment.key, entry, adjustment.expires_at)
        mark_sent(sent)

    async def read(self, keys: Sequence[str], now: float) -> list[int]:
        self._sweep(now)
        return [self._value(key, now) for key in keys]

    async def scan(self, prefix: str, now: float) -> dict[str, int]:
        self._sweep(now)
        return {key: self._value(key, now) for key in self._entries
                if key.startswith(prefix) and self._entries[key].expires_at > now}

    async def aclose(self) -> None:
        self._entries.clear()
        self._expiries.clear()
