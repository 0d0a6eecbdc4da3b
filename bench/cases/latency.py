"""Cases 1, 2 and 11: the latency the relay adds, one request at a time, at fixed rates, and
with many requests in flight.

The reference is the same request sent straight to the upstream, measured in the same run,
in alternating rounds (so drifts of the machine hit both sides alike).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.client import Pool, Request
from bench.loadgen import Endpoint, open_loop, sequential
from bench.session import MODEL, RssSampler, Session, chat_endpoint
from bench.stack import UPSTREAM_KEY, portkey_headers
from bench.stats import BackgroundLoad, ms

__all__ = ["at_concurrency", "fixed_rates", "one_at_a_time"]


async def one_at_a_time(s: Session) -> dict[str, Any]:
    """Relay vs direct, with nginx (compiled), LiteLLM (Python) and Portkey (node) through the
    same placement as references: what any proxy on this machine adds, and what other gateways
    add."""
    cfg = s.cfg
    nginx, nginx_port = s.stack.nginx(s.upstreams["fast"])
    portkey, portkey_port = s.stack.portkey()
    eps = {"direct": s.direct(), "relay": s.via_relay(),
           "nginx": chat_endpoint("nginx", nginx_port, MODEL, key=UPSTREAM_KEY),
           "litellm": chat_endpoint("litellm", await s.litellm_ready(), MODEL),
           "portkey": chat_endpoint("portkey", portkey_port, MODEL,
                                    headers=portkey_headers(s.upstreams["fast"]))}
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
        s.stack.stop(portkey)
    out: dict[str, Any] = {"background_cpu_pct": bg.stop(), "rounds": cfg.seq_rounds,
                           "per_round": cfg.seq_per_round}
    for name, values in lat.items():
        out[name] = {"n": len(values), "errors": errors[name], "p50": ms(values, 0.5),
                     "p90": ms(values, 0.9), "p99": ms(values, 0.99),
                     "p999": ms(values, 0.999)}
    for name in ("relay", "nginx", "litellm", "portkey"):
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


async def at_concurrency(s: Session) -> dict[str, Any]:
    """Case 11: what the relay and nginx add with N requests in flight: N callers, each sending
    its next request when its last one is answered (a closed loop, as N busy app threads
    behave), against the same callers straight to the upstream, in rotating rounds."""
    cfg = s.cfg
    nginx, nginx_port = s.stack.nginx(s.upstreams["fast"])
    eps = {"direct": s.direct(), "relay": s.via_relay(),
           "nginx": chat_endpoint("nginx", nginx_port, MODEL, key=UPSTREAM_KEY)}
    names = list(eps)
    clock = asyncio.get_running_loop().time
    rows: list[dict[str, Any]] = []
    bg = BackgroundLoad().start()
    try:
        for callers in cfg.concurrency:
            pools = {name: await s.pool(ep, callers) for name, ep in eps.items()}
            for name in names:  # warm-up at this concurrency
                await _callers(pools[name], eps[name], callers, 10)
            lat: dict[str, list[float]] = {name: [] for name in names}
            errors = dict.fromkeys(names, 0)
            elapsed = dict.fromkeys(names, 0.0)
            for i in range(cfg.concurrency_rounds):
                for name in names[i % len(names):] + names[:i % len(names)]:
                    began = clock()
                    done = await _callers(pools[name], eps[name], callers,
                                          cfg.concurrency_per_caller)
                    elapsed[name] += clock() - began
                    lat[name] += [x.latency for x in done if x.ok]
                    errors[name] += sum(1 for x in done if not x.ok)
            row: dict[str, Any] = {"concurrency": callers}
            for name in names:
                row[name] = {"n": len(lat[name]), "errors": errors[name],
                             "p50": ms(lat[name], 0.5), "p99": ms(lat[name], 0.99),
                             "rps": round(len(lat[name]) / elapsed[name], 1)
                             if elapsed[name] else 0.0}
            for name in ("relay", "nginx"):
                prefix = "" if name == "relay" else f"{name}_"
                row[f"{prefix}added_p50"] = round(row[name]["p50"] - row["direct"]["p50"], 3)
                row[f"{prefix}added_p99"] = round(row[name]["p99"] - row["direct"]["p99"], 3)
            rows.append(row)
    finally:
        s.stack.stop(nginx)
    out = {"rounds": cfg.concurrency_rounds, "per_caller": cfg.concurrency_per_caller,
           "rows": rows, "background_cpu_pct": bg.stop()}
    s.results["11"] = out
    return out


async def _callers(pool: Pool, endpoint: Endpoint, callers: int,
                   each: int) -> list[Request]:
    """``callers`` closed loops of ``each`` requests at once."""
    done = await asyncio.gather(*(sequential(pool, endpoint, each) for _ in range(callers)))
    return [request for requests in done for request in requests]
