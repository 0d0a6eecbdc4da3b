"""``python -m bench [--smoke] [--cases 1,2,...] [--providers N] [--idle-seconds S] ...``.

Starts everything on loopback (a control plane, the bench upstreams, the operator, the relay,
LiteLLM's proxy, nginx), runs the cases, prints the table, writes the raw results to
``bench/results/results.json``, the figures to ``docs/bench/`` and the report to
``BENCHMARKS.md`` (not in ``--smoke`` mode, which writes under ``bench/results/smoke``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench.config import ROOT, BenchConfig, full, smoke
from bench.source import snapshot

# Memory (6) runs early: RSS never shrinks, so it is measured before any overload step.
CASE_ORDER = ("1", "11", "6", "2", "4", "5", "3", "8", "10", "7", "9")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="every case at tiny sizes (< 3 min)")
    p.add_argument("--cases", help="comma-separated case numbers (default: all; with "
                                   "--relay-variant governed, all but 10)")
    p.add_argument("--providers", type=int, help="providers of case 7 (default 1000)")
    p.add_argument("--big-providers", type=int,
                   help="the large count of case 7 (default 5000; 0 skips it)")
    p.add_argument("--soak-seconds", type=float, help="case 6 soak length (default 120)")
    p.add_argument("--idle-providers", type=int, help="providers of case 9 (default 1000)")
    p.add_argument("--idle-seconds", type=float,
                   help="case 9: how long the providers are re-checked with nothing changing "
                        "(default 600)")
    p.add_argument("--idle-interval", type=float,
                   help="case 9: the providers' re-check interval in seconds (default 30, "
                        "at least 10)")
    p.add_argument("--relay-variant", choices=("none", "governed"), default="none",
                   help="the relay of cases 1-6, 8 and 11: 'none' (no authentication, no "
                        "quota; the default) or 'governed' (Kubernetes authentication with "
                        "cached reviews, and a ChatQuota on every provider)")
    p.add_argument("--code", default="HEAD",
                   help="commit to measure (default HEAD), or 'worktree' for the working tree")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--results", type=lambda value: Path(value).resolve(),  # (nginx -p)
                   help="results directory; the report and figures go there too, not into "
                        "the repository's BENCHMARKS.md and docs/bench")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the report and figures from the last results.json")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> BenchConfig:
    cfg = smoke(args.results) if args.smoke else full()
    cases = (frozenset(c.strip() for c in args.cases.split(",")) if args.cases
             else cfg.cases - ({"10"} if args.relay_variant != "none" else set()))
    if args.relay_variant != "none" and "10" in cases:
        raise SystemExit("case 10 compares relays of its own: run it with --relay-variant none")
    changes: dict[str, Any] = {"cases": cases, "pin": not args.no_pin,
                               "relay_variant": args.relay_variant}
    if args.results and not args.smoke:  # a side run: leave the committed report alone
        changes.update(results_dir=args.results, report=args.results / "BENCHMARKS.md",
                       figures_dir=args.results / "figures")
    if args.providers is not None:
        changes["providers"] = args.providers
    if args.big_providers is not None:
        changes["big_providers"] = args.big_providers
    for name in ("soak_seconds", "idle_providers", "idle_seconds", "idle_interval"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    cfg = dataclasses.replace(cfg, **changes)
    cfg.results_dir.mkdir(parents=True, exist_ok=True)
    if args.code != "worktree" and not args.report_only:  # --report-only runs no code
        code, commit = snapshot(args.code, cfg.results_dir)
        sys.path.insert(0, str(code))  # the driver's imports of chatprovider too
        cfg = dataclasses.replace(cfg, code=code, commit=commit)
    return cfg


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _node_version() -> str:
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        return "not installed"
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)  # noqa: S603
    return out.stdout.strip().lstrip("v") or "unknown"


def meta(cfg: BenchConfig, argv: list[str], started: float) -> dict[str, Any]:
    import aiohttp
    import httptools
    import uvloop

    from bench import oha
    from bench.stack import litellm_version, nginx_version, portkey_version

    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    return {
        "command": " ".join(["python -m bench", *map(shlex.quote, argv)]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "duration": f"{time.time() - started:.0f} s",
        "code measured": cfg.commit,
        "machine": f"{os.cpu_count()} CPUs ({_cpu_model()}), {int(mem) // 2**20} GiB, "
                   f"Linux {platform.release()}; CPU used by other processes is recorded per case "
                   f"(background CPU)",
        "versions": f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
                    f"httptools {httptools.__version__}, uvloop {uvloop.__version__}, "
                    f"LiteLLM {litellm_version()}, Portkey gateway {portkey_version()} (node "
                    f"{_node_version()}), nginx {nginx_version()}, wrk 4.1.0 (Debian), "
                    f"oha {oha.version()} (crates.io)",
        "placement": ("proxy under test (relay, LiteLLM, Portkey, nginx) alone on CPU 1; load "
                      "generator and upstreams on CPU 0; control plane and operator "
                      "unpinned") if cfg.proxy_cpus else "no CPU pinning",
        "relay": ("`chatprovider relay --relay-auth none` (standalone, default settings: "
                  "uvloop event loop, access log on at INFO), providers made Ready by "
                  "`chatprovider run`") if cfg.relay_variant == "none" else (
                  "`chatprovider relay --relay-auth kubernetes` (standalone, default settings: "
                  "uvloop event loop, access log on at INFO; reviews cached), called with a "
                  "ServiceAccount's bound token, every provider governed by a ChatQuota "
                  "(counters in memory, limits far above the load), providers made Ready by "
                  "`chatprovider run`"),
        "references": "direct = the same request straight to the upstream; LiteLLM proxy "
                      "(1 worker, no master key, one model whose api_base is the upstream); "
                      "Portkey's open-source gateway (`@portkey-ai/gateway` from npm, one node "
                      "process, headless, the upstream named per request by its "
                      "x-portkey-provider and x-portkey-custom-host headers); "
                      "nginx (1 worker, keep-alive upstream pool, proxy_buffering off)",
        "upstream": "the project's dev server (`bench/upstream.py`: devserver + key "
                    "record), a separate process; for case 3's second frontier, an nginx "
                    "answering one fixed chat completion",
        "load generator": "bench/client.py + bench/loadgen.py: asyncio protocols, open loop, "
                          "latency from the intended send time; for case 3's second frontier, "
                          "oha (Rust, from crates.io) with -q and --latency-correction: open "
                          "loop, latency from the scheduled send time",
    }


async def run_cases(cfg: BenchConfig) -> dict[str, Any]:
    from bench.cases import (
        idle,
        latency,
        memory,
        operator,
        quota,
        rotation,
        streaming,
        throughput,
    )
    from bench.cases.throughput import wrk
    from bench.session import MODEL, Session, pin_driver
    from bench.stack import UPSTREAM_KEY, Stack

    s = Session(cfg, Stack(cfg))
    relay_cases = cfg.cases & {"1", "2", "3", "4", "5", "6", "8", "10", "11"}
    steps = {"1": latency.one_at_a_time, "2": latency.fixed_rates,
             "3": throughput.run, "4": streaming.one_at_a_time, "5": streaming.concurrent,
             "6": memory.run, "7": operator.run, "8": rotation.run, "9": idle.run,
             "10": quota.overhead, "11": latency.at_concurrency}
    try:
        t = time.monotonic()
        await s.start_plane()
        pin_driver(cfg)
        s.start_upstreams()
        if "3" in cfg.cases:
            s.start_litellm()
        print(f"[bench] control plane and upstreams up in {time.monotonic() - t:.1f}s",
              flush=True)
        fast = s.upstreams["fast"]
        s.results["0"] = {"wrk": await asyncio.to_thread(wrk, s, "127.0.0.1", fast.port, MODEL,
                                                         UPSTREAM_KEY)}
        print(f"[bench] upstream ceiling (wrk): {s.results['0']['wrk']}", flush=True)
        if relay_cases:
            await s.start_relay_side()
            print(f"[bench] relay up, idle RSS {s.relay_idle_rss:.1f} MiB", flush=True)
        for case in CASE_ORDER:
            if case not in cfg.cases:
                continue
            t = time.monotonic()
            print(f"[bench] case {case} ...", flush=True)
            result = await steps[case](s)
            brief = {k: v for k, v in result.items()
                     if not isinstance(v, (list, dict)) or k in ("relay", "direct")}
            print(f"[bench] case {case} done in {time.monotonic() - t:.0f}s: "
                  f"{json.dumps(brief, default=str)[:400]}", flush=True)
            if s.relay is not None and not s.relay.alive():
                raise RuntimeError(f"the relay died:\n{s.relay.tail()}")
    finally:
        await s.close()
    return s.results


def run_settings(cfg: BenchConfig) -> dict[str, Any]:
    """The settings a run was made with, as recorded next to its results."""
    return {k: (sorted(v) if isinstance(v, frozenset) else v)
            for k, v in dataclasses.asdict(cfg).items()
            if k not in ("results_dir", "figures_dir", "report", "code")}


def details(r: dict[str, Any], settings: dict[str, Any]) -> str:
    """Per-case settings and raw numbers (without the long sample lists)."""
    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items()
                    if k not in ("samples_ms", "samples", "ready_curve", "modified_at")}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return ("Settings of this run:\n\n```json\n" + json.dumps(settings, default=str) +
            "\n```\n\nRaw results per case (sample lists left out; all in "
            "`bench/results/results.json`):\n\n```json\n" +
            json.dumps(strip(r), indent=1, default=str) + "\n```")


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    cfg = build_config(args)
    started = time.time()
    saved = cfg.results_dir / "results.json"
    if args.report_only:
        data = json.loads(saved.read_text())
        info, results = data["meta"], data["results"]
        # the saved run's settings, not this invocation's (older files: its commit at least)
        settings = data.get("settings") or {**run_settings(cfg),
                                            "commit": info["code measured"]}
    else:
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        results = asyncio.run(run_cases(cfg))
        info, settings = meta(cfg, argv, started), run_settings(cfg)
        saved.write_text(json.dumps({"meta": info, "settings": settings, "results": results},
                                    indent=1, default=str))
    from bench import plots, report

    all_rows = report.rows(results)
    print()
    print(report.table(all_rows))
    figures = plots.all_figures(results, cfg.figures_dir)
    if cfg.report is not None:
        analysis_file = ROOT / "bench" / "analysis.md"
        analysis = analysis_file.read_text() if analysis_file.exists() else ""
        rel = [(title, path.relative_to(cfg.report.parent)) for title, path in figures]
        cfg.report.write_text(report.markdown(all_rows, info, rel, details(results, settings),
                                              analysis))
        print(f"\nwrote {_shown(cfg.report)} and {len(figures)} figures in "
              f"{_shown(cfg.figures_dir)}")
    else:
        print(f"\nresults in {cfg.results_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
