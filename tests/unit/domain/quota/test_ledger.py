"""Admission by reservation and settlement, on the in-memory store (the reference)."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st
from tests.unit.domain.quota.helpers import ALICE, PROVIDER, quota

from chatprovider.counters.memory import MemoryCounterStore
from chatprovider.domain.quota.demand import Demand
from chatprovider.domain.quota.ledger import GRACE, Charge, admit, reserve
from chatprovider.domain.quota.limits import applicable_limits
from chatprovider.domain.quota.windows import Window, window_end

NOW = 1_780_000_000.0


def _limits(**limits: int):
    return applicable_limits([quota(limits=limits)], ALICE, PROVIDER, {})


def test_a_reservation_fits_only_if_every_limit_has_room() -> None:
    charges = [Charge("a", 5, 10, NOW + 60), Charge("b", 5, 10, NOW + 60)]
    assert admit([5, 5], charges).admitted
    assert admit([5, 5], charges).used == (10, 10)
    refused = admit([5, 6], charges)
    assert (refused.admitted, refused.refused, refused.used) == (False, 1, (5, 6))
    assert admit([99], [Charge("c", 0, 10, NOW)]).admitted  # a zero charge never refuses


def test_charges_follow_the_demand_and_expire_after_their_window() -> None:
    limits = _limits(requestsPerMinute=5, tokensPerMinute=1000, promptTokensPerMinute=900,
                     completionTokensPerMinute=800, tokensPerMonth=10**6, concurrentRequests=2)
    reservation = reserve(limits, Demand(30, 70), NOW, "lease-1", lease_seconds=120)
    assert [c.amount for c in reservation.charges] == [1, 100, 30, 70, 100, 1]
    assert reservation.charges[0].expires_at == window_end(Window.MINUTE, NOW) + GRACE
    assert reservation.charges[4].expires_at == window_end(Window.MONTH, NOW) + GRACE
    assert reservation.charges[5].lease == "lease-1"
    assert reservation.charges[5].expires_at == NOW + 120


def test_the_settlement_refunds_charges_extra_and_releases_the_lease() -> None:
    limits = _limits(requestsPerMinute=5, tokensPerMinute=1000, promptTokensPerMinute=900,
                     completionTokensPerMinute=800, concurrentRequests=2)
    reservation = reserve(limits, Demand(30, 70), NOW, "lease-1")
    deltas = {(a.key.split("|")[2], a.lease): a.delta
              for a in reservation.settlement(Demand(40, 10))}
    assert deltas == {("tokens", None): -50, ("prompt_tokens", None): 10,
                      ("completion_tokens", None): -60, ("concurrent", "lease-1"): -1}


def _run(coro):
    return asyncio.run(coro)


@given(st.integers(0, 200), st.lists(st.integers(0, 60), max_size=40))
def test_the_sum_of_admitted_reservations_never_exceeds_the_limit(capacity: int,
                                                                 sizes: list[int]) -> None:
    limits = _limits(tokensPerMinute=capacity)

    async def scenario() -> int:
        store, admitted = MemoryCounterStore(), 0
        for i, size in enumerate(sizes):
            reservation = reserve(limits, Demand(size, 0), NOW, f"l{i}")
            outcome = await store.reserve(reservation.charges, NOW)
            admitted += size if outcome.admitted else 0
            assert outcome.used[0] <= capacity
            if not outcome.admitted:
                assert outcome.used[0] + size > capacity  # refused only when it did not fit
        assert (await store.read([limits[0].key(NOW)], NOW)) == [admitted]
        return admitted

    assert _run(scenario()) <= capacity


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 80)), max_size=30))
def test_settlement_never_makes_a_counter_negative(requests: list[tuple[int, int]]) -> None:
    limits = _limits(tokensPerMinute=10**6, completionTokensPerMinute=10**6)

    async def scenario() -> None:
        store = MemoryCounterStore()
        expected = 0
        for i, (reserved, used) in enumerate(requests):
            reservation = reserve(limits, Demand(0, reserved), NOW, f"l{i}")
            assert (await store.reserve(reservation.charges, NOW)).admitted
            await store.settle(reservation.settlement(Demand(0, used)), NOW)
            # a second, bogus settlement of the same request must not go below zero either
            await store.settle(reservation.settlement(Demand(0, 0)), NOW)
            values = await store.read([lim.key(NOW) for lim in limits], NOW)
            assert min(values) >= 0
            expected = max(expected + used - reserved, 0)
        assert values == [expected, expected] if requests else True

    _run(scenario())


def test_leases_are_released_and_expire() -> None:
    limits = _limits(concurrentRequests=1)

    async def scenario() -> None:
        store = MemoryCounterStore()
        first = reserve(limits, Demand(1, 1), NOW, "a", lease_seconds=10)
        assert (await store.reserve(first.charges, NOW)).admitted
        second = reserve(limits, Demand(1, 1), NOW, "b", lease_seconds=10)
        assert not (await store.reserve(second.charges, NOW)).admitted
        await store.settle(first.settlement(Demand(1, 1)), NOW)
        assert (await store.reserve(second.charges, NOW)).admitted
        # never released (its relay died): the slot comes back when the lease expires
        third = reserve(limits, Demand(1, 1), NOW + 11, "c")
        assert (await store.reserve(third.charges, NOW + 11)).admitted

    _run(scenario())


def test_counters_vanish_when_their_window_and_grace_are_over() -> None:
    limits = _limits(requestsPerMinute=1)

    async def scenario() -> None:
        store = MemoryCounterStore()
        reservation = reserve(limits, Demand(0, 0), NOW, "a")
        assert (await store.reserve(reservation.charges, NOW)).admitted
        key = limits[0].key(NOW)
        expiry = reservation.charges[0].expires_at
        assert await store.read([key], expiry - 0.001) == [1]
        assert await store.scan("llm/q|", expiry - 0.001) == {key: 1}
        assert await store.read([key], expiry) == [0]
        assert await store.scan("llm/q|", expiry) == {}
        assert len(store) == 0
        # a refund after the expiry is dropped; an extra charge to a live window is kept
        await store.settle(reservation.settlement(Demand(0, 0)), expiry + 1)
        assert len(store) == 0

    _run(scenario())
