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
