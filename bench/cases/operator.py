"""Case 7: the operator (``chatprovider run``) on a real API server.

* apply-to-Ready: one provider created, time until its status says Ready (repeated trials);
* N providers created at once: time until all are Ready, and the API writes per provider
  (``apiserver_request_total``: status patches, other writes to chatproviders, Events);
* a restart with nothing changed: API writes in the next ``restart_settle`` seconds (should
  be 0);
* the operator's RSS at 0, N and the big count of providers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench import kube as k
from bench.session import Session
from bench.stack import UPSTREAM_KEY
from bench.stats import BackgroundLoad, ms

__all__ = ["run"]

NS = "bench-ops"


async def _settle_rss(proc: Any, seconds: float = 3.0) -> float:
    await asyncio.sleep(seconds)
    return float(proc.rss())


async def run(s: Session) -> dict[str, Any]:
    cfg = s.cfg
    kube = s.kube
    assert kube is not None
    endpoint = f"{s.upstreams['fast'].base}/v1"
    await k.create_namespace(kube, NS)
    await k.put_secret(kube, NS, UPSTREAM_KEY)
    watch = k.ReadyWatch(kube, NS)
    await watch.start()
    out: dict[str, Any] = {}
    bg = BackgroundLoad().start()
    operator = s.stack.operator(s.kubeconfig, NS)
    try:
        await asyncio.sleep(2.0)
        out["rss_0_mib"] = round(await _settle_rss(operator), 1)
        # apply-to-Ready, one at a time
        trials: list[float] = []
        for i in range(cfg.ready_trials):
            name = f"one-{i}"
            sent = await k.create_providers(kube, [k.provider(NS, name, endpoint)])
            if await watch.wait([name], 30):
                trials.append(watch.ready_at[name] - sent[name])
        out["apply_to_ready"] = {"trials": cfg.ready_trials, "ready": len(trials),
                                 "p50_ms": ms(trials, 0.5), "p99_ms": ms(trials, 0.99),
                                 "max_ms": ms(trials, 1.0),
                                 "samples_ms": [round(t * 1000, 2) for t in trials]}
        # N at once
        out["bulk"] = await _bulk(s, watch, endpoint, "bulk", cfg.providers)
        out[f"rss_{cfg.providers}_mib"] = round(await _settle_rss(operator), 1)
        out["rss_at"] = {str(cfg.providers): out[f"rss_{cfg.providers}_mib"]}
        # restart with nothing changed
        s.stack.stop(operator)
        before = s.writes()
        operator = s.stack.operator(s.kubeconfig, NS, tag="operator-restarted")
        await asyncio.sleep(cfg.restart_settle)
        delta = s.writes() - before
        total = cfg.providers + cfg.ready_trials
        out["restart"] = {"settle_s": cfg.restart_settle, "providers": total,
                          "status_patches": delta.status_patches,
                          "other_writes": delta.other_provider_writes, "events": delta.events}
        # the big count
        if cfg.big_providers > total:
            out["big"] = await _bulk(s, watch, endpoint, "big", cfg.big_providers - total)
            out["big"]["total_providers"] = cfg.big_providers
            rss = round(await _settle_rss(operator), 1)
            out[f"rss_{cfg.big_providers}_mib"] = rss
            out["rss_at"][str(cfg.big_providers)] = rss
    finally:
        out["background_cpu_pct"] = bg.stop()
        s.stack.stop(operator)
        await watch.stop()
    s.results["7"] = out
    return out


async def _bulk(s: Session, watch: k.ReadyWatch, endpoint: str, prefix: str,
                count: int) -> dict[str, Any]:
    assert s.kube is not None
    before = s.writes()
    bodies = [k.provider(NS, f"{prefix}-{i}", endpoint) for i in range(count)]
    names = [b["metadata"]["name"] for b in bodies]
    t0 = time.monotonic()
    await k.create_providers(s.kube, bodies)
    created = time.monotonic() - t0
    ok = await watch.wait(names, timeout=max(120.0, count * 0.2))
    ready_times = sorted(watch.ready_at[n] - t0 for n in names if n in watch.ready_at)
    elapsed = ready_times[-1] if ready_times else None
    await asyncio.sleep(2.0)  # writes still in flight after the last Ready
    delta = s.writes() - before
    return {"providers": count, "all_ready": ok, "ready": len(ready_times),
            "create_seconds": round(created, 2),
            "all_ready_seconds": round(elapsed, 2) if elapsed is not None else None,
            "status_patches_per_provider": round(delta.status_patches / count, 3),
            "other_writes_per_provider": round(delta.other_provider_writes / count, 3),
            "events_per_provider": round(delta.events / count, 3),
            "ready_curve": [round(t, 3) for t in ready_times[:: max(1, count // 200)]]}
