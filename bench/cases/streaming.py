"""Cases 4 and 5: streamed answers through the relay.

4. One stream at a time, relay and direct in alternating rounds, from an upstream that paces
   its frames: the time to first token (first SSE event) and the gaps between frames, and
   whether every frame arrived in its own read (nothing buffered and coalesced).
5. N streams at once (spread over several providers of one slow upstream, so that no
   per-provider limit is what is measured): a stream *stalls* when its first frame or any
   later frame comes more than ``stall_seconds`` after the previous one.
"""

from __future__ import annotations

from typing import Any

from bench.client import Pool, Request
from bench.loadgen import Endpoint, sequential, streams
from bench.session import RssSampler, Session
from bench.stats import BackgroundLoad, ms

__all__ = ["concurrent", "one_at_a_time"]


def _gaps(req: Request) -> list[float]:
    ev = req.response.events if req.response is not None else []
    return [b - a for a, b in zip(ev, ev[1:], strict=False)]


def _ttft(req: Request) -> float | None:
    ev = req.response.events if req.response is not None else []
    return ev[0] - req.intended if ev else None


async def one_at_a_time(s: Session) -> dict[str, Any]:
    cfg = s.cfg
    kw = {"stream": True, "max_tokens": cfg.stream_pieces}
    eps = {"direct": s.direct("paced", **kw), "relay": s.via_relay("paced", **kw)}
    pools = {k: await s.pool(e) for k, e in eps.items()}
    for name in eps:
        await sequential(pools[name], eps[name], 2, track_events=True)
    ttft: dict[str, list[float]] = {"direct": [], "relay": []}
    gaps: dict[str, list[float]] = {"direct": [], "relay": []}
    bad = {"direct": 0, "relay": 0}
    coalesced = {"direct": 0, "relay": 0}
    frames = {"direct": 0, "relay": 0}
    bg = BackgroundLoad().start()
    for i in range(cfg.stream_rounds):
        for name in (("direct", "relay") if i % 2 == 0 else ("relay", "direct")):
            for req in await sequential(pools[name], eps[name], cfg.stream_per_round,
                                        track_events=True):
                first = _ttft(req)
                if not req.ok or first is None or req.response is None or \
                        not req.response.done_seen:
                    bad[name] += 1
                    continue
                ttft[name].append(first)
                gaps[name] += _gaps(req)
                frames[name] += len(req.response.events)
                coalesced[name] += len(req.response.events) - req.response.reads_with_events
    out: dict[str, Any] = {"background_cpu_pct": bg.stop(),
                           "frame_delay_ms": cfg.stream_frame_delay * 1000,
                           "events_per_stream": cfg.stream_pieces + 3}
    for name in eps:
        out[name] = {"streams": len(ttft[name]), "failed": bad[name], "frames": frames[name],
                     "coalesced_frames": coalesced[name],
                     "ttft_p50": ms(ttft[name], 0.5), "ttft_p99": ms(ttft[name], 0.99),
                     "gap_p50": ms(gaps[name], 0.5), "gap_p99": ms(gaps[name], 0.99)}
    r, d = out["relay"], out["direct"]
    out["added_ttft_p50"] = round(r["ttft_p50"] - d["ttft_p50"], 3)
    out["added_ttft_p99"] = round(r["ttft_p99"] - d["ttft_p99"], 3)
    out["added_gap_p50"] = round(r["gap_p50"] - d["gap_p50"], 3)
    out["added_gap_p99"] = round(r["gap_p99"] - d["gap_p99"], 3)
    out["samples_ms"] = {"ttft": {k: [round(v * 1000, 4) for v in x] for k, x in ttft.items()},
                         "gaps": {k: [round(v * 1000, 4) for v in x] for k, x in gaps.items()}}
    s.results["4"] = out
    return out


def _summary(reqs: list[Request], stall: float) -> dict[str, Any]:
    completed = stalled = 0
    ttfts: list[float] = []
    worst: list[float] = []
    for req in reqs:
        done = req.ok and req.response is not None and req.response.done_seen
        completed += done
        first = _ttft(req)
        gaps = _gaps(req)
        if first is not None:
            ttfts.append(first)
        biggest = max(gaps, default=0.0)
        worst.append(biggest)
        if not done or first is None or first > stall or biggest > stall:
            stalled += 1
    return {"streams": len(reqs), "completed": completed, "stalled": stalled,
            "ttft_p50": ms(ttfts, 0.5), "ttft_p99": ms(ttfts, 0.99),
            "ttft_max": ms(ttfts, 1.0), "max_gap_p99": ms(worst, 0.99),
            "max_gap_max": ms(worst, 1.0)}


async def concurrent(s: Session) -> dict[str, Any]:
    cfg = s.cfg
    kw = {"stream": True, "max_tokens": cfg.long_pieces}
    relay_eps: list[Endpoint] = [s.via_relay(f"slow-{i}", **kw)
                                 for i in range(cfg.long_providers)]
    direct_eps = [s.direct("slow", **kw)]
    length = (cfg.long_pieces + 3) * cfg.long_frame_delay
    rows: list[dict[str, Any]] = []
    assert s.relay is not None
    bg = BackgroundLoad().start()
    for n in cfg.concurrent_streams:
        row: dict[str, Any] = {"streams": n}
        ramp = min(2.0, length / 2)
        for name, eps in (("direct", direct_eps), ("relay", relay_eps)):
            pool = Pool(eps[0].host, eps[0].port, max_connections=n + 64)
            sampler = RssSampler(s.relay).start() if name == "relay" else None
            cpu0 = s.relay.cpu()
            try:
                reqs = await streams(pool, eps, n, ramp, timeout=ramp + length * 3 + 30)
            finally:
                await pool.close()
            row[name] = _summary(reqs, cfg.stall_seconds)
            if sampler is not None:
                await sampler.stop()
                s.note_rss(sampler.peak, overloaded=row[name]["stalled"] > 0)
                row[name]["rss_peak_mib"] = round(sampler.peak, 1)
                row[name]["cpu_seconds"] = round(s.relay.cpu() - cpu0, 2)
        rows.append(row)
    ok = [r["streams"] for r in rows if r["relay"]["stalled"] == 0]
    out = {"rows": rows, "background_cpu_pct": bg.stop(),
           "stream_seconds": round(length, 2), "frame_delay_ms": cfg.long_frame_delay * 1000,
           "providers": cfg.long_providers, "stall_ms": cfg.stall_seconds * 1000,
           "max_without_stall": max(ok, default=0)}
    s.results["5"] = out
    return out
