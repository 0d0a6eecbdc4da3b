"""Which limits an attempt is held to: kept between requests, and never staler than the
ChatQuotas and providers they come from."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from chatprovider.counters.gate import QuotaGate
from chatprovider.counters.memory import MemoryCounterStore
from chatprovider.domain.apis import Operation
from chatprovider.domain.request_body import parse_body
from chatprovider.domain.routing import ProviderRef
from chatprovider.quotas import QuotaIndex
from chatprovider.registry import Registry, view_from_body
from chatprovider.relay.catalog import CatalogCache
from chatprovider.relay.exchange import Exchange
from chatprovider.relay.metering import Metering

PROVIDER = ProviderRef("llm", "vllm")


@dataclass(frozen=True)
class Caller:
    username: str
    groups: tuple[str, ...] = ("system:authenticated",)


def _provider(**labels: str) -> dict:
    return {"metadata": {"namespace": "llm", "name": "vllm", "labels": labels},
            "spec": {"endpoint": "http://vllm.llm.svc:8000"}}


def _quota(name: str = "q", rpm: int = 10, **providers: object) -> dict:
    return {"metadata": {"namespace": "llm", "name": name},
            "spec": {"providers": providers or {"names": ["vllm"]},
                     "subjects": [{"kind": "User", "name": "alice"}],
                     "limits": {"requestsPerMinute": rpm}}}


def _metering(quotas: QuotaIndex, registry: Registry) -> Metering:
    gate = QuotaGate(MemoryCounterStore(), fail_open=False)
    return Metering(quotas, gate, CatalogCache(registry))


def _capacities(metering: Metering, caller: Caller) -> list[int]:
    return [limit.capacity for limit in metering.limits(caller, PROVIDER)]


def test_a_changed_quota_governs_the_next_request() -> None:
    quotas, registry = QuotaIndex(), Registry()
    registry.upsert(view_from_body(_provider()))
    metering = _metering(quotas, registry)
    alice = Caller("alice")
    assert _capacities(metering, alice) == []
    quotas.observe("ADDED", _quota(rpm=10))
    assert _capacities(metering, alice) == [10]
    quotas.observe("MODIFIED", _quota(rpm=3))
    assert _capacities(metering, alice) == [3]
    assert _capacities(metering, Caller("bob")) == []
    quotas.observe("DELETED", _quota())
    assert _capacities(metering, alice) == []


def test_a_provider_relabelled_into_a_selector_is_governed_at_once() -> None:
    quotas, registry = QuotaIndex(), Registry()
    quotas.observe("ADDED", _quota(selector={"matchLabels": {"tier": "shared"}}))
    registry.upsert(view_from_body(_provider(tier="dedicated")))
    metering = _metering(quotas, registry)
    alice = Caller("alice")
    assert _capacities(metering, alice) == []
    registry.upsert(view_from_body(_provider(tier="shared")))
    assert _capacities(metering, alice) == [10]


def test_a_caller_whose_groups_differ_is_not_served_another_callers_limits() -> None:
    quotas, registry = QuotaIndex(), Registry()
    registry.upsert(view_from_body(_provider()))
    group_quota = _quota()
    group_quota["spec"]["subjects"] = [{"kind": "Group", "name": "team-a"}]
    quotas.observe("ADDED", group_quota)
    metering = _metering(quotas, registry)
    assert _capacities(metering, Caller("alice", ("team-a",))) == [10]
    assert _capacities(metering, Caller("alice", ("team-b",))) == []


def test_a_settlement_in_memory_completes_when_the_client_hangs_up() -> None:
    """A cancelled handler still gives back what its attempt did not use: a request limit of
    1 in flight admits the next request once the first is cancelled."""
    async def main() -> None:
        quotas, registry = QuotaIndex(), Registry()
        registry.upsert(view_from_body(_provider()))
        one = _quota()
        one["spec"]["limits"] = {"concurrentRequests": 1}
        quotas.observe("ADDED", one)
        metering = _metering(quotas, registry)
        alice, body = Caller("alice"), parse_body(b'{"model": "m", "messages": []}')
        assert _capacities(metering, alice) == [1]
        entered = asyncio.Event()

        async def hold() -> None:
            async with metering.metered(alice, PROVIDER, Operation.CHAT, body, Exchange(0.0)):
                entered.set()
                await asyncio.Event().wait()

        held = asyncio.ensure_future(hold())
        await entered.wait()
        held.cancel()
        await asyncio.gather(held, return_exceptions=True)
        async with metering.metered(alice, PROVIDER, Operation.CHAT, body, Exchange(0.0)):
            pass

    asyncio.run(main())
