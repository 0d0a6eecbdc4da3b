"""Virtual models: usable backends, the order of one request's routes, the ChatModel status."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from chatprovider.api.chatmodel import ChatModelSpec, ChatModelStatus
from chatprovider.domain.routing import Catalog, CatalogEntry, ProviderRef, Route
from chatprovider.domain.virtual_models import (
    AmbiguousChatModel,
    ChatModelForbidden,
    ChatModelNotReady,
    ChatModelRef,
    chat_model_status,
    needs_model_write,
    parse_chat_model,
    plan,
    resolve,
    usable,
)

REF = ChatModelRef("team-a", "llama3")
NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def catalog(*entries: tuple[str, bool, tuple[str, ...]], namespace: str = "team-a") -> Catalog:
    return Catalog.build(CatalogEntry(ProviderRef(namespace, name), ready, models)
                         for name, ready, models in entries)


def spec(backends: list[tuple[str, str, int]], failover: list[tuple[str, str]] = ()
         ) -> ChatModelSpec:
    return ChatModelSpec.model_validate({
        "backends": [{"provider": p, "model": m, "weight": w} for p, m, w in backends],
        "failover": [{"provider": p, "model": m} for p, m in failover]})


def route(provider: str, model: str) -> Route:
    return Route(ProviderRef("team-a", provider), model)


BOTH = catalog(("blue", True, ("llama3",)), ("green", True, ("llama3.1",)),
               ("hosted", True, ("gpt",)))
SPLIT = spec([("blue", "llama3", 80), ("green", "llama3.1", 20)], [("hosted", "gpt")])


def test_the_draw_picks_by_weight_then_the_others_then_failover() -> None:
    assert plan(REF, SPLIT, BOTH, 0.0) == (route("blue", "llama3"), route("green", "llama3.1"),
                                           route("hosted", "gpt"))
    assert plan(REF, SPLIT, BOTH, 0.79)[0] == route("blue", "llama3")
    assert plan(REF, SPLIT, BOTH, 0.8) == (route("green", "llama3.1"), route("blue", "llama3"),
                                           route("hosted", "gpt"))
    assert plan(REF, SPLIT, BOTH, 0.999999)[0] == route("green", "llama3.1")


def test_a_seeded_split_of_80_20_is_within_two_points_over_10000_requests() -> None:
    rng = random.Random(17)
    firsts = [plan(REF, SPLIT, BOTH, rng.random())[0].provider.name for _ in range(10_000)]
    share = firsts.count("blue") / len(firsts)
    assert abs(share - 0.8) < 0.02, share


def test_unusable_backends_take_no_traffic_and_failover_follows() -> None:
    # green is not Ready; blue does not offer the model any more: only failover remains
    broken = catalog(("blue", True, ("other",)), ("green", False, ()), ("hosted", True, ("gpt",)))
    assert plan(REF, SPLIT, broken, 0.1) == (route("hosted", "gpt"),)
    only_green = catalog(("blue", False, ("llama3",)), ("green", True, ("llama3.1",)))
    assert {plan(REF, SPLIT, only_green, d)[0] for d in (0.0, 0.5, 0.99)} == \
        {route("green", "llama3.1")}


def test_weight_zero_is_no_traffic_and_no_fallback() -> None:
    canary = spec([("blue", "llama3", 1), ("green", "llama3.1", 0)])
    assert plan(REF, canary, BOTH, 0.99) == (route("blue", "llama3"),)
    only_zero = spec([("green", "llama3.1", 0)], [("hosted", "gpt")])
    assert plan(REF, only_zero, BOTH, 0.5) == (route("hosted", "gpt"),)


def test_no_usable_backend_is_a_503() -> None:
    with pytest.raises(ChatModelNotReady) as caught:
        plan(REF, SPLIT, catalog(("blue", False, ())), 0.5)
    assert caught.value.status == 503 and caught.value.code == "model_not_ready"


def test_backends_are_looked_up_in_the_chat_models_namespace_only() -> None:
    elsewhere = catalog(("blue", True, ("llama3",)), namespace="team-b")
    with pytest.raises(ChatModelNotReady):
        plan(REF, spec([("blue", "llama3", 1)]), elsewhere, 0.5)


def test_names_qualified_and_bare() -> None:
    refs = {"llama3": (ChatModelRef("team-a", "llama3"), ChatModelRef("team-b", "llama3"))}

    def names(name: str) -> tuple[ChatModelRef, ...]:
        return refs.get(name, ())

    assert parse_chat_model("team-b/llama3", names) == (ChatModelRef("team-b", "llama3"),)
    assert parse_chat_model("team-c/llama3", names) == ()
    assert parse_chat_model("llama3", names) == refs["llama3"]
    assert parse_chat_model("team-a/vllm/llama3", names) == ()
    assert parse_chat_model("mistral", names) == ()


def test_resolution_reveals_nothing_the_caller_may_not_use() -> None:
    a, b = ChatModelRef("team-a", "llama3"), ChatModelRef("team-b", "llama3")
    assert resolve("llama3", (a, b), {a: True, b: False}) == a
    assert resolve("llama3", (a, b), {}) is None  # routed as a provider model id
    with pytest.raises(AmbiguousChatModel):
        resolve("llama3", (a, b), {a: True, b: True})
    assert resolve("team-b/llama3", (b,), {b: True}) == b
    with pytest.raises(ChatModelForbidden) as caught:
        resolve("team-b/llama3", (b,), {b: False})
    assert caught.value.status == 403
    assert resolve("team-c/llama3", (), {}) is None


def test_status_ready_while_one_backend_is_usable_with_a_summary() -> None:
    half = catalog(("blue", True, ("llama3",)), ("green", False, ()))
    status = chat_model_status("team-a", SPLIT, 3, ChatModelStatus(), half, NOW)
    ready = status.conditions[0]
    assert (ready.type, ready.status, ready.reason) == ("Ready", "True", "SomeBackendsUsable")
    assert "green/llama3.1 (ProviderNotReady)" in ready.message
    assert "hosted/gpt (ProviderNotFound)" in ready.message
    assert status.observed_generation == 3 and ready.observed_generation == 3
    assert status.summary == ("blue/llama3=80, green/llama3.1=20 (not ready), "
                              "failover:hosted/gpt (not ready)")
    assert [(b.provider, b.role, b.ready, b.reason) for b in status.backends] == [
        ("blue", "weighted", True, "Usable"), ("green", "weighted", False, "ProviderNotReady"),
        ("hosted", "failover", False, "ProviderNotFound")]
    every = chat_model_status("team-a", SPLIT, 3, status, BOTH, NOW + dt.timedelta(1))
    assert every.conditions[0].reason == "BackendsUsable"
    assert every.conditions[0].last_transition_time == ready.last_transition_time  # still True


def test_status_not_ready_and_written_only_when_it_changed() -> None:
    none = catalog(("blue", True, ("other",)))
    status = chat_model_status("team-a", SPLIT, 1, ChatModelStatus(), none, NOW)
    assert (status.conditions[0].status, status.conditions[0].reason) == \
        ("False", "NoBackendUsable")
    assert "blue/llama3 (ModelNotOffered)" in status.conditions[0].message
    assert needs_model_write(ChatModelStatus(), status)
    again = chat_model_status("team-a", SPLIT, 1, status, none, NOW + dt.timedelta(hours=1))
    assert not needs_model_write(status, again)
    assert needs_model_write(status, chat_model_status("team-a", SPLIT, 1, status, BOTH, NOW))


def test_a_continued_response_goes_to_its_origin_first() -> None:
    origin = ProviderRef("team-a", "green")
    assert plan(REF, SPLIT, BOTH, 0.0, origin) == (
        route("green", "llama3.1"), route("blue", "llama3"), route("hosted", "gpt"))
    assert plan(REF, SPLIT, BOTH, 0.0, ProviderRef("team-b", "green"))[0] == \
        route("blue", "llama3")


def test_usable_is_having_a_route() -> None:
    assert usable(REF, SPLIT, BOTH)
    assert not usable(REF, SPLIT, catalog(("blue", False, ())))
