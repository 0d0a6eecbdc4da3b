"""Case 8: hot key rotation under steady traffic through the relay.

Each trial writes a fresh key into the provider's Secret and times how long until the
upstream first sees a request carrying it (the upstream records when each key first arrives;
it accepts every ``bench-`` key, as step 1 of the documented procedure has it accept both).
Every request of the steady traffic counts: any non-200 is a failed request.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from bench import kube as k
from bench.loadgen import open_loop
from bench.session import RELAY_NS, Session
from bench.stats import ms

__all__ = ["run"]


async def _first_seen(http: aiohttp.ClientSession, url: str, key: str,
                      timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with http.get(url, headers={"Authorization": "Bearer bench-poll"}) as resp:
            seen = json.loads(await resp.read())
        if key in seen:
            return float(seen[key][0])
        await asyncio.sleep(0.02)
    return None


async def run(s: Session) -> dict[str, Any]:
    cfg = s.cfg
    assert s.kube is not None
    ep = s.via_relay()
    pool = await s.pool(ep, 16)
    url = f"{s.upstreams['fast'].base}/_bench/keys"
    stop = asyncio.Event()
    period = 1.5
    traffic = asyncio.create_task(open_loop(
        pool, ep, cfg.rotation_rate, cfg.rotation_trials * period * 4 + 10, grace=5.0,
        stop=stop))
    latencies: list[float] = []
    missed = 0
    async with aiohttp.ClientSession() as http:
        await asyncio.sleep(1.0)
        for i in range(cfg.rotation_trials):
            key = f"bench-rot-{i}-{time.monotonic_ns()}"
            changed = time.monotonic()
            await k.put_secret(s.kube, RELAY_NS, key)
            seen = await _first_seen(http, url, key, timeout=10.0)
            if seen is None:
                missed += 1
            else:
                latencies.append(seen - changed)
            await asyncio.sleep(max(0.0, changed + period - time.monotonic()))
        await asyncio.sleep(1.0)
    stop.set()
    res = await traffic
    out = {"trials": cfg.rotation_trials, "rate": cfg.rotation_rate, "picked_up": len(latencies),
           "missed": missed, "p50_ms": ms(latencies, 0.5), "p99_ms": ms(latencies, 0.99),
           "max_ms": ms(latencies, 1.0), "requests": len(res.requests) + res.lost,
           "failed_requests": res.errors, "traffic_p99_ms": ms(res.latencies, 0.99),
           "samples_ms": [round(x * 1000, 2) for x in latencies]}
    s.results["8"] = out
    return out
