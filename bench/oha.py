"""The compiled open-loop load generator: oha (Rust, tokio + hyper; ``bench/install.sh`` builds
it from crates.io).

``oha -q RATE --latency-correction`` schedules request *i* at ``t0 + i / RATE`` on a fixed set
of connections and measures each latency from that scheduled time, so time spent waiting for a
free connection or behind a slow answer is counted, not omitted: the same rule as the Python
generator (:mod:`bench.loadgen`), whose own ceiling on one shared core is below nginx's. oha's
ceiling (the frontier straight to the static upstream) is reported beside the targets.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

from bench.stack import OHA

__all__ = ["Target", "Window", "attack", "available", "version", "window"]


@dataclass(frozen=True)
class Target:
    """One POST, sent again and again: where, with which headers and body."""

    url: str
    body: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Window:
    """What one run at a fixed rate measured."""

    rate: float
    """Asked for, requests per second."""
    achieved: float
    """Answers with status 200 per second of the window."""
    errors: int
    """Requests that failed or were answered with anything but 200."""
    p50: float
    p99: float
    """Latency percentiles from the scheduled send time, ms."""

    def passes(self, bound_ms: float) -> bool:
        return self.errors == 0 and self.achieved >= 0.98 * self.rate and self.p99 <= bound_ms

    def step(self, bound_ms: float) -> dict[str, Any]:
        return {"rate": round(self.rate, 1), "achieved": round(self.achieved, 1),
                "errors": self.errors, "p50": round(self.p50, 3), "p99": round(self.p99, 3),
                "pass": self.passes(bound_ms)}


def available() -> bool:
    return OHA.exists()


def version() -> str:
    if not available():
        return "not installed"
    out = subprocess.run([str(OHA), "--version"], capture_output=True, text=True,  # noqa: S603
                         timeout=10).stdout
    return out.strip().removeprefix("oha ") or "unknown"


def attack(target: Target, rate: float, seconds: float, connections: int,
           cpus: set[int] | None) -> Window:
    """oha at ``rate`` for ``seconds`` on ``connections`` kept-alive connections, pinned to
    ``cpus``."""
    pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
    headers = [arg for name, value in target.headers.items() for arg in ("-H", f"{name}: {value}")]
    argv = [*pin, str(OHA), "-z", f"{seconds}s", "-q", f"{rate:.0f}", "-c", str(connections),
            "--latency-correction", "-w", "--no-tui", "--output-format", "json", "-m", "POST",
            *headers, "-d", target.body, target.url]
    out = subprocess.run(argv, check=True, capture_output=True, text=True,  # noqa: S603
                         timeout=seconds + 60).stdout
    return window(rate, seconds, json.loads(out))


def window(rate: float, seconds: float, report: dict[str, Any]) -> Window:
    """A :class:`Window` from oha's JSON output (latencies in seconds)."""
    codes = {str(k): int(v) for k, v in (report.get("statusCodeDistribution") or {}).items()}
    failed = sum(int(v) for v in (report.get("errorDistribution") or {}).values())
    ok = codes.get("200", 0)
    pct = report.get("latencyPercentiles") or {}
    return Window(rate=rate, achieved=ok / seconds, errors=sum(codes.values()) - ok + failed,
                  p50=float(pct.get("p50") or 0.0) * 1e3,
                  p99=float(pct.get("p99") or 0.0) * 1e3)
