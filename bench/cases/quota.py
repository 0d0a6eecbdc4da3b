"""Case 10: the latency a ChatQuota adds to a relayed request, with its counters in memory and in
Redis, and with the relay's Kubernetes authentication (cached reviews) on top, against the same
relays' ungoverned, unauthenticated requests in the same run.

Two providers share the fast upstream: ``fast`` and ``fast-quota``; one ChatQuota governs
``fast-quota`` for every caller (anonymous or authenticated), with limits far above what the
case sends, so every request is admitted, reserved and settled and none is refused. Four relays,
pinned alike, serve them: the session's (no authentication, counters in memory), one with its
counters in a ``redis-server`` on loopback, and those two again with ``--relay-auth
kubernetes``, called with a bound token of a ServiceAccount that may ``use`` the providers
(TokenReview and SubjectAccessReview answers cached, as in production). Requests to ``fast`` and
to ``fast-quota`` on every relay alternate by rounds, one request at a time; the difference of
a pair's percentiles is what the quota (and the authentication) adds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench import kube as k
from bench.loadgen import Endpoint, sequential
from bench.session import CALLER, MODEL, RELAY_NS, Session, chat_endpoint, until_governed
from bench.stats import BackgroundLoad, ms
from chatprovider.settings import DEFAULT_TOKEN_AUDIENCE
from chatprovider_tools.redisserver import RedisServer

__all__ = ["GOVERNED", "overhead"]

GOVERNED = "fast-quota"
"""The provider the case's ChatQuota governs (``Session.relay_providers`` adds it)."""
_QUOTA = k.quota(RELAY_NS, "bench", [GOVERNED])


def _endpoints(name: str, port: int, token: str | None) -> dict[str, Endpoint]:
    return {f"{name}": chat_endpoint(name, port, f"{RELAY_NS}/fast/{MODEL}", key=token,
                                     max_tokens=8),
            f"{name}+quota": chat_endpoint(f"{name}+quota", port,
                                           f"{RELAY_NS}/{GOVERNED}/{MODEL}", key=token,
                                           max_tokens=8)}


RELAYS = ("memory", "redis", "auth-memory", "auth-redis")
"""The relays of the case: counters in memory or in Redis, without or with authentication."""


async def overhead(s: Session) -> dict[str, Any]:
    cfg = s.cfg
    assert s.kube is not None and s.relay_port
    await k.create_quota(s.kube, _QUOTA)
    token = await k.caller_token(s.kube, RELAY_NS, CALLER, DEFAULT_TOKEN_AUDIENCE)
    redis = RedisServer()
    await asyncio.to_thread(redis.start)
    started = []
    try:
        ports = {"memory": s.relay_port}
        for name, extra, auth in (("redis", ("--quota-redis-url", redis.url), "none"),
                                  ("auth-memory", (), "kubernetes"),
                                  ("auth-redis", ("--quota-redis-url", redis.url), "kubernetes")):
            proc, ports[name] = s.stack.relay(s.kubeconfig, RELAY_NS, *extra,
                                              tag=f"relay-{name}", auth=auth)
            started.append(proc)
        tokens = {name: token if name.startswith("auth") else None for name in RELAYS}
        for name in RELAYS:
            await until_governed(ports[name], tokens[name], GOVERNED)
        eps = {key: ep for name in RELAYS
               for key, ep in _endpoints(name, ports[name], tokens[name]).items()}
        pools = {name: await s.pool(ep) for name, ep in eps.items()}
        for name in eps:  # warm-up: connections, caches, the counters' keys and scripts
            await sequential(pools[name], eps[name], 50)
        lat: dict[str, list[float]] = {name: [] for name in eps}
        errors = dict.fromkeys(eps, 0)
        names = list(eps)
        bg = BackgroundLoad().start()
        for i in range(cfg.seq_rounds):
            for name in names[i % len(names):] + names[:i % len(names)]:  # rotate the order
                done = await sequential(pools[name], eps[name], cfg.seq_per_round)
                lat[name] += [x.latency for x in done if x.ok]
                errors[name] += sum(1 for x in done if not x.ok)
    finally:
        for proc in started:
            s.stack.stop(proc)
        await asyncio.to_thread(redis.stop)
        await k.delete_quota(s.kube, _QUOTA)
    out: dict[str, Any] = {"background_cpu_pct": bg.stop(), "rounds": cfg.seq_rounds,
                           "per_round": cfg.seq_per_round}
    for name, values in lat.items():
        out[name] = {"n": len(values), "errors": errors[name], "p50": ms(values, 0.5),
                     "p99": ms(values, 0.99)}
    for store in ("memory", "redis"):  # the quota alone; authentication and the quota
        for relay, key in ((store, store), (f"auth-{store}", f"auth_{store}")):
            for q in ("p50", "p99"):
                out[f"{key}_added_{q}"] = round(out[f"{relay}+quota"][q] - out[store][q], 3)
    s.results["10"] = out
    return out
