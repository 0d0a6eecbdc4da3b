"""The results as a table (targets and verdicts) and as ``BENCHMARKS.md``."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Row", "markdown", "rows", "table"]


@dataclass(frozen=True)
class Row:
    case: str
    metric: str
    value: str
    target: str
    ok: bool | None  # None: no target


def _g(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _num(v: Any, unit: str = "", digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}{unit}"
    return f"{v}{unit}"


def _check(v: Any, test: Callable[[Any], bool]) -> bool | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return bool(test(v))


def rows(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []

    def add(case: str, metric: str, v: Any, unit: str, target: str,
            test: Callable[[Any], bool] | None, digits: int = 2) -> None:
        out.append(Row(case, metric, _num(v, unit, digits), target,
                       _check(v, test) if test else None))

    def add_pair(case: str, metric: str, p50: Any, p99: Any, target: str,
                 test: Callable[[Any], bool] | None) -> None:
        """A "p50 / p99" row; the verdict is on the p99."""
        out.append(Row(case, metric, f"{_num(p50, ' ms')} / {_num(p99, ' ms')}", target,
                       _check(p99, test) if test else None))

    c0 = r.get("0", {})
    add("0", "upstream alone: wrk saturation (req/s)", _g(c0, "wrk", "rps"), "", "(reference)",
        None, 0)
    c1 = r.get("1", {})
    add("1", "added latency, one at a time: p50", c1.get("added_p50"), " ms", "≤ 1 ms",
        lambda v: v <= 1.0)
    add("1", "added latency, one at a time: p99", c1.get("added_p99"), " ms", "≤ 3 ms",
        lambda v: v <= 3.0)
    for ref in ("nginx", "litellm", "portkey"):
        if f"{ref}_added_p50" in c1:
            add_pair("1", f"{ref} (same placement) added, one at a time: p50 / p99",
                     c1[f"{ref}_added_p50"], c1[f"{ref}_added_p99"], "(reference)", None)
    # issue 18's targets: ratios to nginx in the same run, with the absolute figure beside
    for pct, bound in (("p50", 0.5), ("p99", None)):
        relay, nginx = c1.get(f"added_{pct}"), c1.get(f"nginx_added_{pct}")
        if relay is not None and nginx is not None and nginx > 0:
            ratio = round(relay / nginx, 2)
            target = f"≤ 2× (and ≤ {bound} ms)" if bound else "≤ 2×"
            add("1", f"added {pct} relay / nginx ({relay:.2f} / {nginx:.2f} ms)", ratio, "×",
                target, (lambda v, r=relay, b=bound: v <= 2.0 and (b is None or r <= b)))
    for row in _g(r, "11", "rows") or []:
        conc = row["concurrency"]
        errs = row["relay"]["errors"] + row["direct"]["errors"]
        target = "p99 ≤ 5 ms, 0 errors" if conc == 64 else "(no target)"
        test = (lambda v, e=errs: v <= 5.0 and e == 0) if conc == 64 else None
        add_pair("11", f"added p50 / p99 at concurrency {conc}, closed loop (errors "
                 f"relay/direct {row['relay']['errors']}/{row['direct']['errors']}; "
                 f"{row['relay']['rps']:.0f} / {row['direct']['rps']:.0f} req/s)",
                 row["added_p50"], row["added_p99"], target, test)
        add_pair("11", f"nginx added at concurrency {conc} ({row['nginx']['rps']:.0f} req/s)",
                 row["nginx_added_p50"], row["nginx_added_p99"], "(reference)", None)
    for row in _g(r, "2", "rows") or []:
        rate = row["rate"]
        errs = row["relay"]["errors"] + row["direct"]["errors"]
        target = "≤ 10 ms, 0 errors" if rate == 500 else "(no target)"
        test = (lambda v, e=errs: v <= 10.0 and e == 0) if rate == 500 else None
        add_pair("2", f"added p50 / p99 at {rate} req/s (errors relay/direct "
                 f"{row['relay']['errors']}/{row['direct']['errors']})",
                 row["added_p50"], row["added_p99"], target, test)
    t = _g(r, "3", "targets") or {}
    for name in ("direct", "relay", "litellm", "portkey", "nginx"):
        if name in t:
            add("3", f"frontier {name} (req/s at p99 ≤ {_g(r, '3', 'bound_ms')} ms, 0 errors)",
                t[name]["frontier"], "", "(reference)" if name != "relay" else "", None, 0)
            out[-1] = Row("3", out[-1].metric, f"{out[-1].value} (wrk "
                          f"{_num(_g(t[name], 'wrk', 'rps'), '', 0)})", out[-1].target, None)
    add("3", "relay / LiteLLM throughput", _g(r, "3", "relay_over_litellm"), "×", "≥ 15×",
        lambda v: v >= 15.0)
    add("3", "relay / Portkey throughput", _g(r, "3", "relay_over_portkey"), "×", "≥ 3×",
        lambda v: v >= 3.0)
    add("3", "relay / nginx throughput", _g(r, "3", "relay_over_nginx"), "×", "≥ 0.9×",
        lambda v: v >= 0.9)
    ct = _g(r, "3", "compiled", "targets") or {}
    for name in ("direct", "nginx", "relay"):
        if name in ct:
            add("3", f"frontier {name}, oha (compiled, open loop) and a static upstream"
                + (" (the generator's ceiling)" if name == "direct" else ""),
                ct[name]["frontier"], "", "(reference)" if name != "relay" else "", None, 0)
    add("3", "relay / nginx throughput, oha and a static upstream",
        _g(r, "3", "compiled", "relay_over_nginx"), "×", "≥ 0.9×", lambda v: v >= 0.9, 3)
    c4 = r.get("4", {})
    add("4", "added time to first token: p50", c4.get("added_ttft_p50"), " ms", "(no target)",
        None)
    add("4", "added time to first token: p99", c4.get("added_ttft_p99"), " ms", "≤ 2 ms",
        lambda v: v <= 2.0)
    add("4", "added inter-frame delay: p50 / p99", c4.get("added_gap_p99"), " ms", "(no target)",
        None)
    if c4 and out and out[-1].case == "4":
        out[-1] = Row("4", out[-1].metric, f"{_num(c4.get('added_gap_p50'), ' ms')} / "
                      f"{out[-1].value}", out[-1].target, None)
    coalesced = _g(c4, "relay", "coalesced_frames")
    add("4", "frames coalesced by the relay (unbuffered = 0)", coalesced, "", "0",
        lambda v: v == 0, 0)
    c5 = r.get("5", {})
    for row in c5.get("rows", []):
        rel = row["relay"]
        add("5", f"{row['streams']} concurrent streams: stalled relay / direct "
            f"(TTFT p99 {_num(rel['ttft_p99'], ' ms', 0)})", rel["stalled"], "",
            "0 (at 256)" if row["streams"] == 256 else "(no target)",
            (lambda v: v == 0) if row["streams"] == 256 else None, 0)
        out[-1] = Row("5", out[-1].metric, f"{out[-1].value} / {row['direct']['stalled']}",
                      out[-1].target, out[-1].ok)
    for row in c5.get("rows", []):
        if row["streams"] == 256:  # issue 18: added TTFT p99 at 256 streams
            rel, dire = row["relay"], row["direct"]
            add_pair("5", "256 concurrent streams: added time to first token p50 / p99 "
                     f"(direct {_num(dire['ttft_p50'], ' ms')} / {_num(dire['ttft_p99'], ' ms')})",
                     round(rel["ttft_p50"] - dire["ttft_p50"], 2),
                     round(rel["ttft_p99"] - dire["ttft_p99"], 2), "p99 ≤ 2 ms",
                     lambda v: v <= 2.0)
    add("5", "most streams with no stall", c5.get("max_without_stall"), "", "≥ 256",
        lambda v: v >= 256, 0)
    c6 = r.get("6", {})
    add("6", "relay RSS idle", c6.get("idle_mib"), " MiB", "(no target)", None, 1)
    add("6", "relay RSS peak under load it sustains", c6.get("load_peak_mib"), " MiB", "≤ 150 MB",
        lambda v: v * 1.048576 <= 150.0, 1)
    add("6", "relay RSS peak after overload (case 3's search past saturation)",
        c6.get("overload_peak_mib"), " MiB", "(no target)", None, 1)
    add("6", f"relay RSS growth over the soak ({c6.get('soak_seconds')} s at "
        f"{c6.get('soak_rate')} req/s)", c6.get("soak_growth_mib"), " MiB", "(no target)",
        None, 1)
    c7 = r.get("7", {})
    add("7", "apply-to-Ready p50", _g(c7, "apply_to_ready", "p50_ms"), " ms", "≤ 500 ms",
        lambda v: v <= 500.0, 0)
    add("7", "apply-to-Ready p99", _g(c7, "apply_to_ready", "p99_ms"), " ms", "(no target)",
        None, 0)
    bulk = c7.get("bulk", {})
    add("7", f"{bulk.get('providers')} providers to Ready", bulk.get("all_ready_seconds"), " s",
        "≤ 60 s", lambda v: v <= 60.0 and bool(bulk.get("all_ready")), 1)
    writes = None if not bulk else (bulk["status_patches_per_provider"]
                                    + bulk["other_writes_per_provider"])
    add("7", "API writes per provider (status patches + other; events apart)", writes, "",
        "≤ 2", lambda v: v <= 2.0, 2)
    add("7", "Events posted per provider", bulk.get("events_per_provider"), "", "(no target)",
        None, 2)
    rs = c7.get("restart", {})
    rw = None if not rs else rs["status_patches"] + rs["other_writes"]
    add("7", f"writes after a restart with no change ({rs.get('settle_s')} s)", rw, "", "0",
        lambda v: v == 0, 0)
    for count, rss in (c7.get("rss_at") or {}).items():
        at_scale = int(count) >= 10_000  # issue 18's target is at 10,000 providers
        add("7", f"operator RSS at {count} providers", rss, " MiB",
            "≤ 300 MiB" if at_scale else "(no target)",
            (lambda v: v <= 300.0) if at_scale else None, 1)
    add("7", "operator RSS at 0 providers", c7.get("rss_0_mib"), " MiB", "(no target)", None, 1)
    big = c7.get("big")
    if big:
        add("7", f"{big.get('total_providers')} providers: the last {big['providers']} to Ready",
            big.get("all_ready_seconds"), " s", "(no target)", None, 1)
        if bulk and big.get("total_providers", 0) >= 10_000:
            add("7", f"{big['total_providers']} providers to Ready: the first {bulk['providers']}"
                f" and the last {big['providers']} (the apply-to-Ready trials apart)",
                bulk["all_ready_seconds"] + big["all_ready_seconds"], " s", "≤ 60 s",
                lambda v: v <= 60.0 and bool(bulk["all_ready"] and big["all_ready"]), 1)
    c8 = r.get("8", {})
    add("8", "key rotation: Secret update → first upstream request with the new key, p99",
        c8.get("p99_ms"), " ms", "≤ 3 s", lambda v: v <= 3000.0 and not c8.get("missed"), 0)
    add("8", "failed requests during rotations", c8.get("failed_requests"), "", "0",
        lambda v: v == 0, 0)
    c9 = r.get("9", {})
    ready9, idle9 = c9.get("ready", {}), c9.get("idle", {})
    add("9", f"{c9.get('providers')} providers (interval {c9.get('interval_s')} s) to Ready",
        ready9.get("all_ready_seconds"), " s", "(no target)", None, 1)
    writes9 = None if not ready9 else (ready9["status_writes_per_provider"]
                                       + ready9["other_writes_per_provider"])
    add("9", "API writes per provider to Ready (status + other; events apart)", writes9, "",
        "≤ 2", lambda v: v <= 2.0, 2)
    add("9", "MODIFIED watch events per provider up to Ready", ready9.get(
        "modified_to_ready_per_provider"), "", "(no target)", None, 2)
    if idle9:
        # within a window shorter than the heartbeat no lastCheck re-write can come due
        bound = (c9["interval_s"] / c9["heartbeat_s"]) if idle9["heartbeat_due"] else 0.0
        target = f"≤ {bound:.4f} (heartbeat)" if bound else \
            f"0 (no heartbeat due: {c9['heartbeat_s']:.0f} s)"
        def within(v: float) -> bool:
            return v <= bound and idle9["rechecks"] > 0

        add("9", f"re-checks at rest per provider ({idle9['seconds']:.0f} s, nothing changed)",
            idle9["rechecks_per_provider"], "", "(positive control)", None, 1)
        add("9", "status writes per provider per re-check at rest",
            idle9["status_writes_per_recheck"], "", target, within, 4)
        add("9", "MODIFIED events per provider per re-check at rest (watchers' view)",
            idle9["modified_per_recheck"], "", target, within, 4)
        add("9", "writes at rest: other / Events / providers whose resourceVersion moved",
            f"{idle9['other_writes']:.0f} / {idle9['events_posted']:.0f} / "
            f"{idle9['providers_rv_changed']}", "", "(no target)", None)
        add("9", "operator CPU at rest (share of one CPU; per re-check)",
            idle9["operator_cpu_pct"], " %", "(no target)", None, 2)
        out[-1] = Row("9", out[-1].metric, f"{out[-1].value}; "
                      f"{_num(idle9['operator_cpu_ms_per_recheck'], ' ms')}", out[-1].target,
                      None)
        add("9", "operator RSS at rest: start / end", idle9["operator_rss_start_mib"], " MiB",
            "(no target)", None, 1)
        out[-1] = Row("9", out[-1].metric, f"{out[-1].value} / "
                      f"{_num(idle9['operator_rss_end_mib'], ' MiB', 1)}", out[-1].target, None)
    c10 = r.get("10", {})
    for store, where, bound in (("memory", "in memory", 0.1), ("redis", "in Redis", 0.4)):
        for key, relay, what in (
                (store, store, f"a ChatQuota (counters {where}) added over no quota"),
                (f"auth_{store}", f"auth-{store}", "Kubernetes auth (cached reviews) and a "
                 f"ChatQuota (counters {where}) added over neither")):
            if f"{key}_added_p50" not in c10:
                continue
            # the verdict is on the p50 (issue 18's target)
            errs = c10[store]["errors"] + c10[f"{relay}+quota"]["errors"]
            p50, p99 = c10[f"{key}_added_p50"], c10[f"{key}_added_p99"]
            out.append(Row("10", f"{what}, one at a time: p50 / p99 (errors {errs})",
                           f"{_num(p50, ' ms')} / {_num(p99, ' ms')}",
                           f"p50 ≤ {bound} ms, 0 errors", p50 <= bound and errs == 0))
    return [row for row in out if row.value != "n/a" or row.ok is not None]


def _verdict(ok: bool | None) -> str:
    return {True: "met", False: "MISSED", None: ""}[ok]


def table(all_rows: list[Row]) -> str:
    w = max(len(x.metric) for x in all_rows) if all_rows else 10
    lines = [f"{'case':4} {'metric':{w}} {'value':>24} {'target':>18}  verdict"]
    for x in all_rows:
        lines.append(f"{x.case:4} {x.metric:{w}} {x.value:>24} {x.target:>18}  "
                     f"{_verdict(x.ok)}")
    return "\n".join(lines)


def markdown(all_rows: list[Row], meta: dict[str, Any], figures: list[tuple[str, Path]],
             details: str, analysis: str) -> str:
    out = ["# Benchmarks", "",
           "Generated by `python -m bench` (`bench/`); the hand-written analysis at the end "
           "comes from `bench/analysis.md`. Every figure is a ratio or a difference measured "
           "in the same run against a reference.", "",
           "## How this was run", "", f"    {meta['command']}", ""]
    for key, value in meta.items():
        if key != "command":
            out.append(f"- **{key}**: {value}")
    out += ["", "## Results against the targets", "",
            "| case | metric | value | target | verdict |", "|---|---|---|---|---|"]
    for x in all_rows:
        out.append(f"| {x.case} | {x.metric} | {x.value} | {x.target} | {_verdict(x.ok)} |")
    out += ["", "## Figures", ""]
    for title, path in figures:
        out += [f"### {title}", "", f"![{title}]({path.as_posix()})", ""]
    out += ["## Details", "", details, ""]
    if analysis:
        out += [analysis.strip(), ""]
    return "\n".join(out)
