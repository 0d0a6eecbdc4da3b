"""Adversarial property tests of the pure parsers the security story rests on: endpoint URLs
(what is checked is what is connected to), the egress policy (every spelling of a denied
address), and routing (never a provider the caller may not use). Pure: no network."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from chatprovider.domain.egress import BUILTIN_DENY, EgressPolicy
from chatprovider.domain.endpoint import InvalidEndpoint, resolve_endpoint
from chatprovider.domain.routing import (
    Catalog,
    CatalogEntry,
    ProviderRef,
    RoutingError,
    candidates,
    route,
)

POLICY = EgressPolicy()
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- the egress policy --------------------------------------------------------------------------
denied_v4 = st.sampled_from([n for n in BUILTIN_DENY if n.version == 4]).flatmap(
    lambda net: st.integers(int(net.network_address), int(net.broadcast_address)).map(
        ipaddress.IPv4Address))


@FAST
@given(denied_v4)
def test_every_ipv6_spelling_of_a_denied_ipv4_address_is_denied(v4) -> None:
    n = int(v4)
    spellings = [
        ipaddress.IPv6Address((0xFFFF << 32) | n),           # ::ffff:a.b.c.d (mapped)
        ipaddress.IPv6Address(f"64:ff9b::{v4}"),             # NAT64
        ipaddress.IPv6Address(n),                            # ::a.b.c.d (IPv4-compatible)
    ]
    assert not POLICY.check(v4)
    for v6 in spellings:
        if int(v6) in (0, 1):
            continue  # :: and ::1 are IPv6 addresses in their own right
        assert not POLICY.check(v6), v6
        assert not POLICY.check(f"[{v6}]"), v6
        assert not POLICY.check(v6.exploded), v6


def test_loopback_ipv6_stays_ipv6() -> None:
    assert POLICY.check("::1")  # not "0.0.0.1"
    assert not POLICY.check("::")


# -- endpoint URLs: a parser differential against what aiohttp connects to -----------------
_PIECES = st.sampled_from([
    "a", "b", "0", "1", "9", "x", "-", "_", ".", ":", "@", "[", "]", "%", "%25", "%2e", "/",
    "\\", "#", "?", "::", "ffff", "169.254.169.254", "0x7f", "127.0.0.1", "localhost", "v1",
    "chat", "completions", "\u3002", "\uff0e", "xn--", "\u0430", "80", "443", ";", ",", "*",
    "\t", " ", "\u200b", "\u202e", "..",
])
_HOSTISH = st.lists(_PIECES, min_size=1, max_size=12).map("".join)
_ENDPOINTS = st.builds(lambda scheme, host, path: f"{scheme}://{host}{path}",
                       st.sampled_from(["http", "https", "HTTP", "hTtPs"]), _HOSTISH,
                       st.sampled_from(["", "/", "/v1", "/v1/chat/completions", "/a/../b",
                                        "/%2e%2e/x", "/x?y", "/x#y"]))


@FAST
@given(_ENDPOINTS)
def test_the_host_checked_is_the_host_connected_to(endpoint: str) -> None:
    """The relay checks ``ResolvedEndpoint.host`` against the egress policy and gives the URL to
    aiohttp: both must agree on host and port for every URL that is accepted."""
    try:
        resolved = resolve_endpoint(endpoint)
    except InvalidEndpoint:
        return
    for url in (resolved.chat_completions_url, resolved.models_url, resolved.embeddings_url):
        parsed = URL(url)
        assert parsed.raw_host == resolved.host, (endpoint, url)  # what aiohttp dials
        assert parsed.port == resolved.port, (endpoint, url)
        assert parsed.scheme == resolved.scheme
        assert parsed.user is None and parsed.password is None
        assert not parsed.query_string and not parsed.fragment
    for url in (resolved.base_url, resolved.chat_completions_url):  # fixed points
        assert resolve_endpoint(url) == resolved
    assert all(c.isascii() and c.isprintable() and not c.isspace()
               for c in resolved.chat_completions_url)


@FAST
@given(st.text(max_size=80))
def test_any_text_is_either_refused_or_normalised(text: str) -> None:
    for candidate in (text, "http://" + text):
        try:
            resolved = resolve_endpoint(candidate)
        except InvalidEndpoint as exc:
            # never echoed back (a short text may also occur in a message's own words:
            # hypothesis found "in" in "endpoint must start with http:// or https://")
            assert len(text) < 8 or text not in str(exc)
            continue
        assert resolved.scheme in ("http", "https") and resolved.host


# -- routing: never a provider the caller may not use -------------------------------------------
_NS = st.sampled_from(["team-a", "team-b", "c"])
_NAMES = st.sampled_from(["vllm", "ollama", "x.y", "m"])
_MODELS = st.sampled_from(["llama", "team-a/vllm/llama", "a/b", "m:1", "team-b/ollama/x",
                           "c/m/team-a/vllm/llama", "x", "", " ", "team-a/vllm"])
_ENTRIES = st.lists(
    st.builds(CatalogEntry, st.builds(ProviderRef, _NS, _NAMES), st.booleans(),
              st.lists(_MODELS.filter(bool), max_size=4).map(tuple)),
    max_size=8, unique_by=lambda e: e.key)


@FAST
@given(_ENTRIES, st.sets(st.builds(ProviderRef, _NS, _NAMES)), _MODELS | st.text(max_size=30),
       st.none() | st.builds(ProviderRef, _NS, _NAMES), st.booleans())
def test_routes_only_to_ready_providers_the_caller_may_use(entries, allowed, model, pin,
                                                           failover) -> None:
    catalog = Catalog.build(entries)
    asked: list[ProviderRef] = []

    def may_use(key: ProviderRef) -> bool:
        asked.append(key)
        return key in allowed

    try:
        routes = route(model, catalog, may_use, pin, failover=failover)
    except RoutingError as exc:
        for qualified in exc.candidates:  # what an error lists is usable by the caller
            key = ProviderRef(*qualified.split("/", 2)[:2])
            assert key in allowed and catalog.entries[key].ready, (qualified, exc)
        routes = ()
    for chosen in routes:
        entry = catalog.entries[chosen.provider]
        assert chosen.provider in allowed and entry.ready
        assert chosen.model in entry.models
    assert set(asked) <= set(candidates(model, catalog, pin))  # nothing else is revealed
