"""Case 6: the relay's resident memory: idle, the peak under the loads of cases 2 to 5 it
sustains (p99 under 1 s, no error, no stalled stream) and apart the peak after overload (the
frontier search of case 3, rates past saturation: CPython keeps the memory it grew to), and
its growth over a bounded soak at a fixed rate (sampled every second; the first 10% of the
soak is warm-up and not counted)."""

from __future__ import annotations

from typing import Any

from bench.loadgen import open_loop
from bench.session import RssSampler, Session
from bench.stats import ms

__all__ = ["run"]


async def run(s: Session) -> dict[str, Any]:
    cfg = s.cfg
    assert s.relay is not None
    ep = s.via_relay()
    pool = await s.pool(ep, 32)
    sampler = RssSampler(s.relay, interval=1.0 if not cfg.smoke else 0.25).start()
    res = await open_loop(pool, ep, cfg.soak_rate, cfg.soak_seconds, grace=5.0)
    samples = await sampler.stop()
    s.note_rss(sampler.peak, overloaded=ms(res.latencies, 0.99) > 1000 or res.errors > 0)
    warm = [x for x in samples if x[0] >= cfg.soak_seconds * 0.1] or samples
    growth = warm[-1][1] - warm[0][1] if warm else 0.0
    span = (warm[-1][0] - warm[0][0]) / 60 if len(warm) > 1 else 0.0
    out = {"idle_mib": round(s.relay_idle_rss, 1), "load_peak_mib": round(s.relay_load_peak, 1),
           "overload_peak_mib": round(s.relay_overload_peak, 1),
           "soak_seconds": cfg.soak_seconds, "soak_rate": cfg.soak_rate,
           "soak_requests": len(res.requests) + res.lost, "soak_errors": res.errors,
           "soak_p99_ms": ms(res.latencies, 0.99),
           "soak_start_mib": round(warm[0][1], 1) if warm else None,
           "soak_end_mib": round(warm[-1][1], 1) if warm else None,
           "soak_growth_mib": round(growth, 1),
           "soak_growth_mib_per_min": round(growth / span, 2) if span else None,
           "samples": [(round(t, 2), round(m, 2)) for t, m in samples]}
    s.results["6"] = out
    return out
