"""Case 10: the latency a ChatQuota adds to a relayed request, with its counters in memory and in
Redis, against the same relay's ungoverned requests in the same run.

Two providers share the fast upstream: ``fast`` and ``fast-quota``; one ChatQuota governs
``fast-quota`` for the bench's (anonymous) caller, with limits far above what the case sends, so
every request is admitted, reserved and settled and none is refused. The session's relay keeps
its counters in memory; a second relay, pinned alike, keeps them in a ``redis-server`` on
loopback. On each relay, requests to ``fast`` (no quota) and to ``fast-quota`` alternate by
rounds, one request at a time, and the difference of their percentiles is what the quota adds.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

from bench import kube as k
from bench.loadgen import Endpoint, sequential
from bench.session import MODEL, RELAY_NS, Session, chat_endpoint
from bench.stats import BackgroundLoad, ms
from chatprovider_tools.redisserver import RedisServer

__all__ = ["GOVERNED", "overhead"]

GOVERNED = "fast-quota"
"""The provider the case's ChatQuota governs (``Session.relay_providers`` adds it)."""
_BIG = 10**12
_QUOTA = {
    "apiVersion": "ai.chatprovider.dev/v1alpha1", "kind": "ChatQuota",
    "metadata": {"name": "bench", "namespace": RELAY_NS},
    "spec": {"providers": {"names": [GOVERNED]},
             "subjects": [{"kind": "Group", "name": "system:unauthenticated"}],
             "scope": "Shared",
             "limits": {"requestsPerMinute": _BIG, "tokensPerMinute": _BIG,
                        "tokensPerDay": _BIG}},
}


def _governed(port: int) -> bool:
    """Whether the relay at ``port`` answers ``fast-quota`` with the quota's headers."""
    body = json.dumps({"model": f"{RELAY_NS}/{GOVERNED}/{MODEL}", "max_tokens": 8,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
        return resp.headers.get("x-ratelimit-limit-requests") is not None


async def _until_governed(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(_governed, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the relay at :{port} does not apply the bench quota")
        await asyncio.sleep(0.2)


def _endpoints(name: str, port: int) -> dict[str, Endpoint]:
    return {f"{name}": chat_endpoint(name, port, f"{RELAY_NS}/fast/{MODEL}", max_tokens=8),
            f"{name}+quota": chat_endpoint(f"{name}+quota", port,
                                           f"{RELAY_NS}/{GOVERNED}/{MODEL}", max_tokens=8)}


async def overhead(s: Session) -> dict[str, Any]:
    cfg = s.cfg
    assert s.kube is not None and s.relay_port
    await k.create_quota(s.kube, _QUOTA)
    redis = RedisServer()
    await asyncio.to_thread(redis.start)
    relay2 = None
    try:
        relay2, port2 = s.stack.relay(s.kubeconfig, RELAY_NS, "--quota-redis-url", redis.url,
                                      tag="relay-redis")
        await _until_governed(s.relay_port)
        await _until_governed(port2)
        eps = {**_endpoints("memory", s.relay_port), **_endpoints("redis", port2)}
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
        if relay2 is not None:
            s.stack.stop(relay2)
        await asyncio.to_thread(redis.stop)
        await k.delete_quota(s.kube, _QUOTA)
    out: dict[str, Any] = {"background_cpu_pct": bg.stop(), "rounds": cfg.seq_rounds,
                           "per_round": cfg.seq_per_round}
    for name, values in lat.items():
        out[name] = {"n": len(values), "errors": errors[name], "p50": ms(values, 0.5),
                     "p99": ms(values, 0.99)}
    for store in ("memory", "redis"):
        out[f"{store}_added_p50"] = round(out[f"{store}+quota"]["p50"] - out[store]["p50"], 3)
        out[f"{store}_added_p99"] = round(out[f"{store}+quota"]["p99"] - out[store]["p99"], 3)
    s.results["10"] = out
    return out
