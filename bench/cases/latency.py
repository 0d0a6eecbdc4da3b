"""Cases 1 and 2: the latency the relay adds, one request at a time and at fixed rates.

The reference is the same request sent straight to the upstream, measured in the same run,
in alternating rounds (so drifts of the machine hit both sides alike).
"""

from __future__ import annotations

from typing import Any

from bench.loadgen import open_loop, sequential
from bench.session import MODEL, RssSampler, Session, chat_endpoint
from bench.stack import UPSTREAM_KEY
from bench.stats import BackgroundLoad, ms

__all__ = ["fixed_rates", "one_at_a_time"]


async def one_at_a_time(s: Session) -> dict[str, Any]:
    """Relay vs direct, with nginx (compiled) and LiteLLM (Python) through the same placement
    as references: what any proxy on this machine adds, and what another Python gateway adds."""
    cfg = s.cfg
    nginx, nginx_port = s.stack.nginx(s.upstreams["fast"])
    eps = {"direct": s.direct(), "relay": s.via_relay(),
           "nginx": chat_endpoint("nginx", nginx_port, MODEL, key=UPSTREAM_KEY),
           "litellm": chat_endpoint("litellm", await s.litellm_ready(), MODEL)}
    pools = {name: await s.pool(ep) for name, ep in eps.items()}
    try:
        for name in eps:  # warm-up: connections, caches, the upstream's code paths
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
        s.stack.stop(nginx)
    out: dict[str, Any] = {"background_cpu_pct": bg.stop(), "rounds": cfg.seq_rounds,
                           "per_round": cfg.seq_per_round}
    for name, values in lat.items():
        out[name] = {"n": len(values), "errors": errors[name], "p50": ms(values, 0.5),
                     "p90": ms(values, 0.9), "p99": ms(values, 0.99),
                     "p999": ms(values, 0.999)}
    for name in ("relay", "nginx", "litellm"):
        prefix = "" if name == "relay" else f"{name}_"
        out[f"{prefix}added_p50"] = round(out[name]["p50"] - out["direct"]["p50"], 3)
        out[f"{prefix}added_p99"] = round(out[name]["p99"] - out["direct"]["p99"], 3)
    out["samples_ms"] = {k: [round(v * 1000, 4) for v in vals] for k, vals in lat.items()}
    s.results["1"] = out
    return out


async def fixed_rates(s: Session) -> dict[str, Any]:
    cfg = s.cfg
    d, r = s.direct(), s.via_relay()
    pools = {"direct": await s.pool(d, 32), "relay": await s.pool(r, 32)}
    eps = {"direct": d, "relay": r}
    rows: list[dict[str, Any]] = []
    assert s.relay is not None
    bg = BackgroundLoad().start()
    for i, rate in enumerate(cfg.rates):
        row: dict[str, Any] = {"rate": rate}
        for name in (("direct", "relay") if i % 2 == 0 else ("relay", "direct")):
            sampler = RssSampler(s.relay).start() if name == "relay" else None
            res = await open_loop(pools[name], eps[name], rate, cfg.rate_seconds, grace=5.0)
            if sampler is not None:
                await sampler.stop()
                s.note_rss(sampler.peak, overloaded=ms(res.latencies, 0.99) > 1000
                           or res.errors > 0)
                row["relay_rss_peak_mib"] = round(sampler.peak, 1)
            lat = res.latencies
            row[name] = {"sent": len(res.requests) + res.lost, "errors": res.errors,
                         "achieved": round(res.achieved, 1), "p50": ms(lat, 0.5),
                         "p99": ms(lat, 0.99), "max": ms(lat, 1.0),
                         "send_lag_p99": ms(res.send_lags, 0.99)}
        row["added_p50"] = round(row["relay"]["p50"] - row["direct"]["p50"], 3)
        row["added_p99"] = round(row["relay"]["p99"] - row["direct"]["p99"], 3)
        rows.append(row)
    out = {"seconds_per_rate": cfg.rate_seconds, "rows": rows, "background_cpu_pct": bg.stop()}
    s.results["2"] = out
    return out
