"""Server-side request forgery: hostile endpoints the operator and the relay must never connect
to, in every spelling, behind DNS names, behind redirects and behind DNS rebinding.

DNS is a stub injected through ``Transports(resolver=...)`` (names ending in ``.ssrf.test``);
every other name goes to the system resolver. "Internal" addresses that must never be reached
are loopback aliases (127.0.0.2, denied by the test's egress policy) with a listener counting
connections, next to the real metadata addresses (which nothing here can reach anyway).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from chatprovider.controller.app import OperatorApp
from chatprovider.domain.egress import EgressPolicy
from chatprovider.kube import KubeClient, KubeConfig
from chatprovider.kube.objects import ReferencedObjects
from chatprovider.relay import AuthMode, Relay, RelaySettings
from chatprovider.settings import OperatorSettings
from chatprovider.upstream.transport import EgressDenied, PolicyResolver, Transports
from chatprovider_tools.devserver import DevServer
from tests.integration.controller.conftest import OperatorThread
from tests.integration.relay.conftest import RelayThread, provider_body

from .harness import RawServer, StubDNS, Trap

TRAP_IP = "127.0.0.2"
POLICY = EgressPolicy.from_strings(deny=[f"{TRAP_IP}/32"])
MSG = [{"role": "user", "content": "hi"}]

#: Spellings of the metadata service (and friends) that must each be refused:
#: (name, endpoint, the operator's Ready reason, the relay's error code or None when the
#: endpoint cannot be used at all)
LITERALS = [
    ("dotted", "http://169.254.169.254/latest", "EgressDenied", "egress_denied"),
    ("decimal", "http://2852039166/v1", "InvalidEndpoint", None),
    ("octal", "http://0251.0376.0251.0376/v1", "InvalidEndpoint", None),
    ("short-form", "http://169.254.43518/v1", "InvalidEndpoint", None),
    ("hex", "http://0xa9fea9fe/v1", "EgressDenied", "egress_denied"),
    ("hex-dotted", "http://0xa9.0xfe.0xa9.0xfe/v1", "EgressDenied", "egress_denied"),
    ("trailing-dot", "http://169.254.169.254./v1", "InvalidEndpoint", None),
    ("ipv4-mapped", "http://[::ffff:169.254.169.254]/v1", "EgressDenied", "egress_denied"),
    ("ipv4-mapped-hex", "http://[::ffff:a9fe:a9fe]/v1", "EgressDenied", "egress_denied"),
    ("ipv4-mapped-long", "http://[0:0:0:0:0:ffff:a9fe:a9fe]/v1", "EgressDenied",
     "egress_denied"),
    ("nat64", "http://[64:ff9b::a9fe:a9fe]/v1", "EgressDenied", "egress_denied"),
    ("ipv4-compatible", "http://[::169.254.169.254]/v1", "EgressDenied", "egress_denied"),
    ("aws-ipv6", "http://[fd00:ec2::254]/v1", "EgressDenied", "egress_denied"),
    ("ipv6-link-local", "http://[fe80::a9fe:a9fe]/v1", "EgressDenied", "egress_denied"),
    ("zone-id", "http://[fe80::1%25eth0]/v1", "InvalidEndpoint", None),
    ("unspecified", "http://0.0.0.0:{port}/v1", "EgressDenied", "egress_denied"),
    ("unspecified-v6", "http://[::]:{port}/v1", "EgressDenied", "egress_denied"),
    ("alibaba", "http://100.100.100.200/v1", "EgressDenied", "egress_denied"),
    ("oracle", "http://192.0.0.192/v1", "EgressDenied", "egress_denied"),
    ("denied-cidr", f"http://{TRAP_IP}:{{port}}/v1", "EgressDenied", "egress_denied"),
    # IPv6 forms that embed an IPv4 address for a tunnel or a translator to deliver to
    ("ipv4-translated", "http://[::ffff:0:a9fe:a9fe]/v1", "EgressDenied", "egress_denied"),
    ("6to4", "http://[2002:a9fe:a9fe::1]/v1", "EgressDenied", "egress_denied"),
    ("6to4-internal", "http://[2002:7f00:2::1]:{port}/v1", "EgressDenied", "egress_denied"),
    ("teredo-server", "http://[2001:0:a9fe:a9fe::1]/v1", "EgressDenied", "egress_denied"),
    ("teredo-client-internal", "http://[2001:0:4136:e378:8000:63bf:80ff:fffd]:{port}/v1",
     "EgressDenied", "egress_denied"),
    ("nat64-internal", "http://[64:ff9b::7f00:2]:{port}/v1", "EgressDenied", "egress_denied"),
    ("nat64-local-96", "http://[64:ff9b:1::a9fe:a9fe]/v1", "EgressDenied", "egress_denied"),
    ("nat64-local-48", "http://[64:ff9b:1:a9fe:a9:fe00::]/v1", "EgressDenied",
     "egress_denied"),
    ("isatap-internal", "http://[2001:db8::5efe:7f00:2]:{port}/v1", "EgressDenied",
     "egress_denied"),
]
#: Proxies (spec.proxy.url) in front of an allowed endpoint that must each be refused: the
#: proxy would receive the request and the provider's key. (label, proxy URL)
PROXIES = [
    ("proxy-denied-cidr", f"http://{TRAP_IP}:{{port}}"),
    ("proxy-metadata", "http://169.254.169.254"),
    ("proxy-ipv4-mapped", f"http://[::ffff:{TRAP_IP}]:{{port}}"),
    ("proxy-6to4", "http://[2002:a9fe:a9fe::1]:3128"),
    ("proxy-dns-internal", "http://internal.ssrf.test:{port}"),
    ("proxy-dns-metadata", "http://metadata.ssrf.test:3128"),
]
#: DNS names (stub) resolving to forbidden addresses.
NAMES = {
    "metadata.ssrf.test": [["169.254.169.254"]],
    "mapped.ssrf.test": [["::ffff:169.254.169.254"]],
    "aws6.ssrf.test": [["fd00:ec2::254"]],
    "internal.ssrf.test": [[TRAP_IP]],
}


class StubbedOperator(OperatorThread):
    """The real OperatorApp, in-process, with a stub DNS in its transports."""

    def __init__(self, settings: OperatorSettings, dns: StubDNS) -> None:
        super().__init__(settings)
        self.app = OperatorApp(self.settings, transports=lambda policy: Transports(
            policy, resolver=dns.resolver))


class StubbedRelay(RelayThread):
    """RelayThread whose transports use a stub DNS."""

    def __init__(self, settings: RelaySettings, kubeconfig, egress: EgressPolicy,
                 dns: StubDNS, *, keep: bool = True) -> None:
        """``keep=False``: no DNS answer and no idle connection is reused."""
        super().__init__(settings, kubeconfig, egress)
        self._dns = dns
        self._keep = {} if keep else {"keepalive_timeout": 0, "dns_ttl": 0}

    def start(self) -> StubbedRelay:
        self._thread.start()

        async def setup() -> Relay:
            self.kube = KubeClient(KubeConfig.load(str(self._kubeconfig)))
            self.objects = ReferencedObjects(self.kube)
            self.transports = Transports(self._egress, resolver=self._dns.resolver,
                                         **self._keep)
            relay = Relay(self.settings, self.registry, self.objects, self.transports)
            await relay.start()
            return relay

        self.relay = self.run(setup())
        return self


def redirect_to(location: str) -> RawServer:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
    return RawServer(answer)


@pytest.fixture()
def upstream():
    with DevServer("generic", models=["m"]) as server:
        yield server


@pytest.fixture()
def trap(upstream):
    trap = Trap(TRAP_IP, upstream.port)  # the "internal service" on the upstream's port
    yield trap
    trap.close()


def corpus(upstream: DevServer) -> list[tuple[str, str, str, str | None]]:
    rows = [(n, e.format(port=upstream.port), r, c) for n, e, r, c in LITERALS]
    for name in NAMES:
        rows.append((f"dns:{name.split('.')[0]}", f"http://{name}:{upstream.port}/v1",
                     "EgressDenied", "egress_denied"))
    redirect_targets = {
        "redirect-metadata": "http://169.254.169.254/latest/meta-data/",
        "redirect-internal": f"http://{TRAP_IP}:{upstream.port}/v1/models",
        "redirect-scheme-relative": "//169.254.169.254/latest",
        "redirect-dns": f"http://metadata.ssrf.test:{upstream.port}/v1/models",
    }
    for name, location in redirect_targets.items():
        rows.append((name, location, "RedirectRefused", "redirect_refused"))
    return rows


def proxied(upstream: DevServer) -> list[tuple[str, dict[str, Any]]]:
    """(label, spec) for every hostile proxy in front of the (allowed) upstream."""
    return [(label, {"endpoint": upstream.url, "proxy": {"url": url.format(port=upstream.port)}})
            for label, url in PROXIES]


def test_operator_refuses_every_hostile_endpoint(kubeconfig, providers, upstream, trap,
                                                 figure) -> None:
    dns = StubDNS({k: list(v) for k, v in NAMES.items()})
    dns.answers["good.ssrf.test"] = [["127.0.0.1"]]
    dns.answers["mixed.ssrf.test"] = [[TRAP_IP, "127.0.0.1"]]
    settings = OperatorSettings(kubeconfig=str(kubeconfig), egress_deny=(f"{TRAP_IP}/32",),
                                namespaces=(providers.ns,), min_retry_seconds=60)
    operator = StubbedOperator(settings, dns).start()
    servers: list[RawServer] = []
    rows = corpus(upstream)
    names: dict[str, tuple[str, str]] = {}
    try:
        for i, (label, endpoint, reason, _) in enumerate(rows):
            if reason == "RedirectRefused":
                server = redirect_to(endpoint)
                servers.append(server)
                endpoint = server.url
            name = f"p{i}"
            names[name] = (label, reason)
            providers.create(name, {"endpoint": endpoint})
        for i, (label, spec) in enumerate(proxied(upstream)):
            names[f"x{i}"] = (label, "EgressDenied")
            providers.create(f"x{i}", spec)
        providers.create("good", {"endpoint": f"http://good.ssrf.test:{upstream.port}/v1"})
        providers.create("mixed", {"endpoint": f"http://mixed.ssrf.test:{upstream.port}/v1"})
        started = time.monotonic()
        for name, (label, reason) in names.items():
            cond = providers.wait_reason(name, reason, timeout=20)
            assert cond["status"] == "False", (label, cond)
            detail = providers.condition(name, "EndpointReachable") or {}
            assert detail.get("reason") == reason, (label, detail)
        providers.wait_reason("good", "Ready")
        providers.wait_reason("mixed", "Ready")  # only its allowed address was used
        took = time.monotonic() - started
    finally:
        operator.stop()
        for server in servers:
            server.close()
    assert trap.hits == 0
    assert all(s.connections == 1 for s in servers), "each redirect was asked once, not followed"
    by_reason: dict[str, int] = {}
    for _, reason in names.values():
        by_reason[reason] = by_reason.get(reason, 0) + 1
    counts = ", ".join(f"{v} {k}" for k, v in sorted(by_reason.items()))
    figure("SSRF corpus through the operator",
           f"{len(names)} hostile endpoints and proxies refused ({counts}) in {took:.1f} s; 0 "
           "connections to the internal listener; a name resolving to a denied and an allowed "
           "address used only the allowed one")


def test_relay_refuses_every_hostile_endpoint(kubeconfig, upstream, trap, figure) -> None:
    dns = StubDNS({k: list(v) for k, v in NAMES.items()})
    dns.answers["mixed.ssrf.test"] = [[TRAP_IP, "127.0.0.1"]]
    relay = StubbedRelay(RelaySettings(port=0, auth_mode=AuthMode.NONE, access_log=False),
                         kubeconfig, POLICY, dns).start()
    servers: list[RawServer] = []
    results: dict[str, tuple[int, str]] = {}
    try:
        rows = corpus(upstream)
        for i, (_, endpoint, _, code) in enumerate(rows):
            if code == "redirect_refused":
                server = redirect_to(endpoint)
                servers.append(server)
                endpoint = server.url
            relay.add(provider_body("ssrf", f"p{i}", endpoint, [f"m{i}"],
                                    timeouts={"connect": "1s", "request": "2s"}))
        relay.add(provider_body("ssrf", "mixed", f"http://mixed.ssrf.test:{upstream.port}/v1",
                                ["mixed-m"]))
        for i, (_, spec) in enumerate(proxied(upstream)):
            relay.add(provider_body("ssrf", f"x{i}", spec["endpoint"], [f"x{i}"],
                                    proxy=spec["proxy"],
                                    timeouts={"connect": "1s", "request": "2s"}))
        for i, (label, _, _, code) in enumerate(rows):
            resp = httpx.post(f"{relay.url}/chat/completions", timeout=10,
                              json={"model": f"m{i}", "messages": MSG})
            error = resp.json()["error"]
            results[label] = (resp.status_code, error["code"])
            if code is None:  # an unusable endpoint: the provider is not usable, nothing sent
                assert (resp.status_code, error["code"]) == (503, "provider_not_ready"), label
            else:
                assert (resp.status_code, error["code"]) == (502, code), (label, resp.text)
        for i, (label, _) in enumerate(proxied(upstream)):
            resp = httpx.post(f"{relay.url}/chat/completions", timeout=10,
                              json={"model": f"x{i}", "messages": MSG})
            results[label] = (resp.status_code, resp.json()["error"]["code"])
            assert results[label] == (502, "egress_denied"), (label, resp.text)
        ok = httpx.post(f"{relay.url}/chat/completions", timeout=10,
                        json={"model": "mixed-m", "messages": MSG})
        assert ok.status_code == 200, ok.text
    finally:
        relay.stop()
        for server in servers:
            server.close()
    assert trap.hits == 0
    statuses = sorted({f"{s} {c}" for s, c in results.values()})
    figure("SSRF corpus through the relay",
           f"{len(results)} hostile endpoints and proxies answered {' / '.join(statuses)}; "
           "0 connections to the internal listener")


def test_dns_rebinding_connects_only_to_the_checked_address(kubeconfig, upstream, trap,
                                                            figure) -> None:
    """The attacker's name answers a harmless address first, then an internal one."""
    dns = StubDNS({"rebind.ssrf.test": [["127.0.0.1"], [TRAP_IP], ["127.0.0.1"], [TRAP_IP]]})
    # no DNS answer and no idle connection kept: each request resolves again, as each would
    # once the DNS TTL and the keep-alive expiry have passed
    relay = StubbedRelay(RelaySettings(port=0, auth_mode=AuthMode.NONE, access_log=False),
                         kubeconfig, POLICY, dns, keep=False).start()
    outcomes: list[str] = []
    try:
        relay.add(provider_body("ssrf", "rebind", f"http://rebind.ssrf.test:{upstream.port}/v1",
                                ["m"]))
        for _ in range(4):
            resp = httpx.post(f"{relay.url}/chat/completions", timeout=10,
                              json={"model": "m", "messages": MSG})
            outcomes.append(str(resp.status_code) if resp.status_code == 200
                            else f"{resp.status_code} {resp.json()['error']['code']}")
    finally:
        relay.stop()
    assert outcomes == ["200", "502 egress_denied", "200", "502 egress_denied"], outcomes
    assert trap.hits == 0
    assert dns.calls.count("rebind.ssrf.test") == 4  # resolved for each new connection

    async def direct() -> list[Any]:  # and at the resolver itself, without the relay
        stub = StubDNS({"r.ssrf.test": [["127.0.0.1"], ["169.254.169.254"]]})
        resolver = PolicyResolver(POLICY, stub.resolver())
        first = await resolver.resolve("r.ssrf.test", 80)
        with pytest.raises(EgressDenied):
            await resolver.resolve("r.ssrf.test", 80)
        await resolver.close()
        return first

    assert [r["host"] for r in asyncio.run(direct())] == ["127.0.0.1"]
    figure("DNS rebinding (allowed address, then an internal one, per resolution)",
           f"requests: {', '.join(outcomes)}; 0 connections to the internal address")


def test_metadata_behind_a_name_is_refused_before_any_connection() -> None:
    """Against the egress policy alone, every address family of a hostile answer."""
    async def main() -> None:
        stub = StubDNS({"all.ssrf.test": [["169.254.169.254", "fd00:ec2::254",
                                           "::ffff:169.254.169.254", "0.0.0.0", TRAP_IP]]})
        resolver = PolicyResolver(POLICY, stub.resolver())
        with pytest.raises(EgressDenied) as info:
            await resolver.resolve("all.ssrf.test", 80)
        await resolver.close()
        assert "169.254.169.254" in str(info.value)

    asyncio.run(main())
