"""The connection pools per transport profile, with the egress policy enforced at resolution
time: an aiohttp session for the operator's checks, a :class:`~chatprovider.upstream.pool.Pool`
for the relay's requests (its hot path)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from chatprovider.domain.egress import EgressPolicy, parse_ip
from chatprovider.upstream.pool import Pool

__all__ = ["EgressDenied", "PolicyResolver", "TransportProfile", "Transports"]


class EgressDenied(OSError):
    """Every address of the host is refused by the egress policy (the request was not sent)."""


class PolicyResolver(AbstractResolver):
    """Resolves with the system resolver (or ``inner``), then drops addresses the policy
    refuses. aiohttp connects to exactly the addresses returned, so what was checked is what is
    connected to."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self._policy.check(r["host"])]
        if not allowed:
            reasons = "; ".join(sorted({self._policy.check(r["host"]).reason for r in results}))
            raise EgressDenied(f"egress policy refuses {host}: {reasons}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True)
class TransportProfile:
    """What distinguishes one connection pool from another."""

    ca_pem: bytes | None = None
    insecure_skip_verify: bool = False
    proxy: str | None = None

    @property
    def key(self) -> tuple[bytes, bool, str | None]:
        """The pool's key, looked up on every request: the CA bundle's bytes themselves (the
        same object each time, until the Secret or ConfigMap changes), not a digest of them."""
        return self.ca_pem or b"", self.insecure_skip_verify, self.proxy

    def ssl_context(self) -> ssl.SSLContext:
        """The system's roots, or only the provider's CA bundle when it has one."""
        cadata = self.ca_pem.decode("ascii", "replace") if self.ca_pem else None
        ctx = ssl.create_default_context(cadata=cadata)
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


class Transports:
    """A cache of sessions by profile. Create and use inside one event loop.

    ``resolver`` makes the name resolver each connection pool asks (default: the system's); the
    egress policy is applied to whatever it answers. Tests use it to stand in for DNS."""

    def __init__(self, policy: EgressPolicy, *, pool_size: int = 0,
                 keepalive_timeout: float = 30.0, dns_ttl: float = 10.0,
                 resolver: Callable[[], AbstractResolver] | None = None) -> None:
        """``pool_size`` caps the connections of one profile's session (0: no cap; the relay's
        pools have none). Providers sharing a profile share the pool, so concurrency is bounded
        per provider by the relay's limiter instead: a shared cap would stall every provider
        behind the busiest one. ``keepalive_timeout``: how long an idle connection is kept;
        ``dns_ttl``: how long a resolved answer is reused (0 for either: never)."""
        self.policy = policy
        self._pool_size = pool_size
        self._keepalive = keepalive_timeout
        self._dns_ttl = dns_ttl
        self._resolver = resolver
        self._sessions: dict[tuple[bytes, bool, str | None], aiohttp.ClientSession] = {}
        self._pools: dict[tuple[bytes, bool, str | None], Pool] = {}
        self._literal_refusals: dict[str, str | None] = {}  # host -> reason, None: allowed

    def session(self, profile: TransportProfile) -> aiohttp.ClientSession:
        session = self._sessions.get(profile.key)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                ssl=profile.ssl_context(),
                resolver=PolicyResolver(
                    self.policy, self._resolver() if self._resolver is not None else None),
                limit=self._pool_size,
                limit_per_host=0,
                keepalive_timeout=self._keepalive,
                use_dns_cache=self._dns_ttl > 0,
                ttl_dns_cache=max(1, round(self._dns_ttl)) if self._dns_ttl > 0 else None,
                force_close=self._keepalive <= 0,
            )
            kwargs: dict[str, Any] = {}
            if profile.proxy:
                kwargs["proxy"] = profile.proxy
            session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, trust_env=False, **kwargs
            )
            self._sessions[profile.key] = session
        return session

    def pool(self, profile: TransportProfile) -> Pool:
        """The relay's connections for ``profile`` (the egress policy applied the same way)."""
        pool = self._pools.get(profile.key)
        if pool is None or pool.closed:
            pool = Pool(profile.ssl_context(), PolicyResolver(
                self.policy, self._resolver() if self._resolver is not None else None),
                proxy=profile.proxy, keepalive_timeout=self._keepalive, dns_ttl=self._dns_ttl)
            self._pools[profile.key] = pool
        return pool

    def check_destination(self, host: str, profile: TransportProfile) -> None:
        """Check the addresses aiohttp would connect to without asking the resolver (raises
        EgressDenied): the target host and the proxy's host when they are IP literals.

        Host names go through :class:`PolicyResolver`, which pins what it checked; with a proxy
        that is the proxy's name, and the target's name is resolved by the proxy (its answer
        is beyond this policy: see docs/security.md)."""
        self._check_literal(host)
        if profile.proxy:
            self._check_literal(URL(profile.proxy).host or "")

    def _check_literal(self, host: str) -> None:
        """aiohttp skips the resolver for IP literals: check those here. The answer for a host
        is remembered (the policy does not change; this runs per request)."""
        try:
            refusal = self._literal_refusals[host]
        except KeyError:
            ip = parse_ip(host)
            decision = self.policy.check(ip) if ip is not None else None
            refusal = decision.reason if decision is not None and not decision else None
            if len(self._literal_refusals) >= 4096:
                self._literal_refusals.clear()
            self._literal_refusals[host] = refusal
        if refusal is not None:
            raise EgressDenied(f"egress policy refuses {host}: {refusal}")

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()
