"""The routing contract: qualified ids, bare ids, pins, ambiguity, readiness, authorization."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatprovider.domain.routing import (
    AmbiguousModel,
    BadPin,
    Catalog,
    CatalogEntry,
    ProviderForbidden,
    ProviderNotReady,
    ProviderRef,
    Route,
    UnknownModel,
    UnknownProvider,
    candidates,
    continuation_pin,
    parse_pin,
    qualified_id,
    route,
    split_qualified,
)

A = ProviderRef("team-a", "vllm")
B = ProviderRef("team-b", "ollama")
DOWN = ProviderRef("team-a", "down")


def everyone(_key: ProviderRef) -> bool:
    return True


@pytest.fixture()
def catalog() -> Catalog:
    return Catalog.build([
        CatalogEntry(A, True, ("meta-llama/Llama-3.1-8B-Instruct", "shared", "llama3:8b")),
        CatalogEntry(B, True, ("llama3:8b", "shared", "team-a/vllm/shared")),
        CatalogEntry(DOWN, False, ("only-down",)),
    ])


def test_qualified_id_pins_the_provider(catalog: Catalog) -> None:
    assert route("team-a/vllm/meta-llama/Llama-3.1-8B-Instruct", catalog, everyone) == (
        Route(A, "meta-llama/Llama-3.1-8B-Instruct"),)


def test_bare_id_offered_once_routes(catalog: Catalog) -> None:
    assert route("meta-llama/Llama-3.1-8B-Instruct", catalog, everyone) == (
        Route(A, "meta-llama/Llama-3.1-8B-Instruct"),)


def test_bare_id_offered_twice_is_ambiguous_and_lists_candidates(catalog: Catalog) -> None:
    with pytest.raises(AmbiguousModel) as info:
        route("llama3:8b", catalog, everyone)
    assert info.value.status == 400
    assert info.value.candidates == ("team-a/vllm/llama3:8b", "team-b/ollama/llama3:8b")


def test_failover_returns_every_usable_provider_in_order(catalog: Catalog) -> None:
    routes = route("llama3:8b", catalog, everyone, failover=True)
    assert [r.provider for r in routes] == [A, B]


def test_bare_id_offered_twice_but_usable_once_routes(catalog: Catalog) -> None:
    assert route("llama3:8b", catalog, lambda k: k == B) == (Route(B, "llama3:8b"),)


def test_unknown_model_is_404(catalog: Catalog) -> None:
    with pytest.raises(UnknownModel) as info:
        route("gpt-5", catalog, everyone)
    assert info.value.status == 404


def test_model_offered_only_by_forbidden_provider_is_unknown_not_forbidden(catalog: Catalog
                                                                           ) -> None:
    with pytest.raises(UnknownModel):
        route("meta-llama/Llama-3.1-8B-Instruct", catalog, lambda k: k == B)


def test_qualified_id_of_forbidden_provider_is_403(catalog: Catalog) -> None:
    with pytest.raises(ProviderForbidden) as info:
        route("team-a/vllm/shared", catalog, lambda k: k == B)
    assert info.value.status == 403


def test_not_ready_provider_is_hidden_for_bare_ids_and_503_when_pinned(catalog: Catalog) -> None:
    with pytest.raises(UnknownModel):
        route("only-down", catalog, everyone)
    with pytest.raises(ProviderNotReady) as info:
        route("team-a/down/only-down", catalog, everyone)
    assert info.value.status == 503
    assert list(catalog.usable(everyone)) == [
        Route(A, "meta-llama/Llama-3.1-8B-Instruct"), Route(A, "shared"), Route(A, "llama3:8b"),
        Route(B, "llama3:8b"), Route(B, "shared"), Route(B, "team-a/vllm/shared"),
    ]


def test_qualified_id_of_model_the_provider_lacks_lists_its_models(catalog: Catalog) -> None:
    with pytest.raises(UnknownModel) as info:
        route("team-b/ollama/nope", catalog, everyone)
    assert "team-b/ollama/llama3:8b" in info.value.candidates


def test_model_that_looks_qualified_for_an_unknown_provider_is_bare() -> None:
    catalog = Catalog.build([CatalogEntry(A, True, ("org/repo/file.gguf",))])
    assert route("org/repo/file.gguf", catalog, everyone) == (Route(A, "org/repo/file.gguf"),)


def test_bare_id_shadowed_by_a_provider_name_is_still_reachable_qualified(catalog: Catalog
                                                                          ) -> None:
    # B offers the bare id "team-a/vllm/shared", which also reads as A's qualified "shared".
    assert route("team-a/vllm/shared", catalog, everyone) == (Route(A, "shared"),)
    assert route("team-b/ollama/team-a/vllm/shared", catalog, everyone) == (
        Route(B, "team-a/vllm/shared"),)


def test_header_pin(catalog: Catalog) -> None:
    assert route("llama3:8b", catalog, everyone, B) == (Route(B, "llama3:8b"),)
    assert route("team-b/ollama/llama3:8b", catalog, everyone, B) == (Route(B, "llama3:8b"),)
    assert route("team-a/vllm/shared", catalog, everyone, B) == (Route(B, "team-a/vllm/shared"),)
    with pytest.raises(BadPin):
        route("team-a/vllm/meta-llama/Llama-3.1-8B-Instruct", catalog, everyone, B)
    with pytest.raises(UnknownProvider):
        route("llama3:8b", catalog, everyone, ProviderRef("x", "y"))
    with pytest.raises(ProviderForbidden):
        route("llama3:8b", catalog, lambda k: k == A, B)
    with pytest.raises(UnknownModel):
        route("meta-llama/Llama-3.1-8B-Instruct", catalog, everyone, B)


def test_candidates_name_only_what_routing_asks_about(catalog: Catalog) -> None:
    assert candidates("llama3:8b", catalog) == (A, B)
    assert candidates("team-a/vllm/x", catalog) == (A,)
    assert candidates("anything", catalog, B) == (B,)
    assert candidates("gpt-5", catalog) == ()


@pytest.mark.parametrize("header", ["", "a", "a/", "/b", "A/b", "a/b/c", "a b/c", "a/B"])
def test_bad_pin_headers(header: str) -> None:
    with pytest.raises(BadPin):
        parse_pin(header)


def test_pin_header_and_split() -> None:
    assert parse_pin(" ns/name.with.dots ") == ProviderRef("ns", "name.with.dots")
    assert split_qualified("a/b/c/d:e") == (ProviderRef("a", "b"), "c/d:e")
    assert split_qualified("a/b/") is None
    assert split_qualified("a/b") is None
    assert split_qualified("A/b/c") is None


def test_listing_is_bounded(catalog: Catalog) -> None:
    assert len(catalog.listing(everyone, 2)) == 2


# -- property: every id /v1/models lists routes back to its provider and model --------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
_model = st.text(alphabet="abcAB0:/._-", min_size=1, max_size=12)
_entry = st.builds(
    lambda ns, name, ready, models: CatalogEntry(ProviderRef(ns, name), ready, tuple(models)),
    st.sampled_from(["a", "b", "a-b", "team"]) | _label,
    st.sampled_from(["p", "q", "a", "b"]) | _label,
    st.booleans(),
    st.lists(_model | st.sampled_from(["a/p/x", "b/q/y", "shared", "a/b/c"]), max_size=5),
)


@settings(max_examples=50, deadline=None)
@given(entries=st.lists(_entry, max_size=6), forbidden=st.sets(st.integers(0, 5), max_size=3),
       failover=st.booleans())
def test_every_listed_id_routes_back_to_its_provider_and_model(
        entries: list[CatalogEntry], forbidden: set[int], failover: bool) -> None:
    catalog = Catalog.build(entries)
    keys = sorted(catalog.entries)
    denied = {keys[i] for i in forbidden if i < len(keys)}

    def may_use(key: ProviderRef) -> bool:
        return key not in denied

    for listed in catalog.usable(may_use):
        assert listed.qualified == qualified_id(listed.provider, listed.model)
        assert route(listed.qualified, catalog, may_use, failover=failover) == (listed,)
        assert route(listed.model, catalog, may_use, listed.provider) == (listed,)


@settings(max_examples=50, deadline=None)
@given(entries=st.lists(_entry, max_size=6), model=_model, failover=st.booleans())
def test_routing_never_picks_a_provider_that_is_not_ready_or_not_allowed(
        entries: list[CatalogEntry], model: str, failover: bool) -> None:
    catalog = Catalog.build(entries)
    allowed = {k for i, k in enumerate(sorted(catalog.entries)) if i % 2 == 0}
    try:
        routes = route(model, catalog, allowed.__contains__, failover=failover)
    except (UnknownModel, AmbiguousModel, ProviderForbidden, ProviderNotReady):
        return
    for chosen in routes:
        entry = catalog.entries[chosen.provider]
        assert entry.ready and chosen.provider in allowed and chosen.model in entry.models


def test_a_continuation_goes_to_its_origin_unless_the_caller_chose_a_provider(
        catalog: Catalog) -> None:
    # a bare id offered twice: ambiguous alone, the origin's with a remembered origin
    assert continuation_pin("shared", catalog, None, B) == B
    assert route("shared", catalog, everyone, continuation_pin("shared", catalog, None, B)) == \
        (Route(B, "shared"),)
    assert continuation_pin("shared", catalog, None, None) is None
    assert continuation_pin("shared", catalog, A, B) == A                  # the header wins
    assert continuation_pin("team-a/vllm/shared", catalog, None, B) is None  # so does the id
    # a model that only looks qualified (unknown provider) is bare: the origin pins it
    assert continuation_pin("nowhere/x/shared", catalog, None, B) == B
