"""The gate over the in-memory store: one relay's admission and settlement."""

from __future__ import annotations

import asyncio

import pytest
from tests.unit.domain.quota.helpers import ALICE, PROVIDER, quota

from chatprovider.counters.gate import QuotaGate
from chatprovider.counters.memory import MemoryCounterStore
from chatprovider.domain.openai_errors import OpenAIError
from chatprovider.domain.quota.demand import Demand
from chatprovider.domain.quota.limits import applicable_limits

NOW = 1_780_000_020.0


def test_requests_are_admitted_until_the_limit_then_refused_and_refunds_make_room() -> None:
    limits = applicable_limits([quota(limits={"tokensPerMinute": 1000})], ALICE, PROVIDER, {})

    async def scenario() -> None:
        store = MemoryCounterStore()
        gate = QuotaGate(store, fail_open=False, clock=lambda: NOW)
        first = await gate.admit(limits, Demand(100, 500))
        assert first.headers["x-ratelimit-remaining-tokens"] == "400"
        with pytest.raises(OpenAIError) as refused:
            await gate.admit(limits, Demand(100, 500))
        assert refused.value.status == 429
        assert refused.value.headers["x-ratelimit-remaining-tokens"] == "400"
        assert await gate.settle(first, Demand(90, 10))  # 500 refunded
        second = await gate.admit(limits, Demand(100, 500))
        assert second.headers["x-ratelimit-remaining-tokens"] == "300"

    asyncio.run(scenario())


def test_a_request_no_quota_governs_is_not_counted() -> None:
    async def scenario() -> None:
        store = MemoryCounterStore()
        admission = await QuotaGate(store, fail_open=False).admit([], Demand(1, 1))
        assert admission.reservation is None and admission.headers == {}
        assert await QuotaGate(store, fail_open=False).settle(admission, Demand(5, 5))
        assert len(store) == 0

    asyncio.run(scenario())


def test_every_request_in_flight_holds_a_lease_of_its_own_on_every_relay() -> None:
    """Two relays (gates) sharing a store: leases are unique per request, so 3 requests in
    flight fill a concurrency limit of 3 and a fourth is refused, whichever relay serves it."""
    limits = applicable_limits([quota(limits={"concurrentRequests": 3})], ALICE, PROVIDER, {})

    async def scenario() -> None:
        store = MemoryCounterStore()
        relays = [QuotaGate(store, fail_open=False, clock=lambda: NOW) for _ in range(2)]
        held = [await relays[n % 2].admit(limits, Demand(1, 1)) for n in range(3)]
        leases = {a.reservation.charges[0].lease for a in held if a.reservation is not None}
        assert len(leases) == 3
        for relay in relays:
            with pytest.raises(OpenAIError) as refused:
                await relay.admit(limits, Demand(1, 1))
            assert refused.value.status == 429
        assert await relays[1].settle(held[0], Demand(1, 1))  # released by the other relay
        assert (await relays[0].admit(limits, Demand(1, 1))).reservation is not None

    asyncio.run(scenario())
