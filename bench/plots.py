"""The figures (PNG, matplotlib's Agg backend): one per case that has a distribution or a
curve to show. Each returns the path written, or None when its case did not run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

__all__ = ["all_figures"]

COLORS = {"direct": "#777777", "relay": "#1f77b4", "litellm": "#d62728", "nginx": "#2ca02c"}


def _cdf(ax: Any, values: list[float], label: str, color: str) -> None:
    data = sorted(values)
    if not data:
        return
    ys = [(i + 1) / len(data) for i in range(len(data))]
    ax.plot(data, ys, label=label, color=color)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sequential(r: dict[str, Any], out: Path) -> Path | None:
    c = r.get("1")
    if not c:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in ("direct", "relay", "nginx", "litellm"):
        if name not in c["samples_ms"]:
            continue
        _cdf(ax, c["samples_ms"][name], f"{name} (p50 {c[name]['p50']:.2f}, p99 "
             f"{c[name]['p99']:.2f} ms)", COLORS[name])
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Case 1: one request at a time (CDF)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, out / "case1-latency-cdf.png")


def rates(r: dict[str, Any], out: Path) -> Path | None:
    c = r.get("2")
    if not c:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [row["rate"] for row in c["rows"]]
    for name in ("direct", "relay"):
        ax.plot(xs, [row[name]["p50"] for row in c["rows"]], "o--", color=COLORS[name],
                label=f"{name} p50")
        ax.plot(xs, [row[name]["p99"] for row in c["rows"]], "o-", color=COLORS[name],
                label=f"{name} p99")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate, req/s (open loop)")
    ax.set_ylabel("latency from intended send, ms (log)")
    ax.set_title("Case 2: latency at fixed arrival rates")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, out / "case2-latency-rates.png")


def throughput(r: dict[str, Any], out: Path) -> Path | None:
    c = r.get("3")
    if not c:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, t in c["targets"].items():
        steps = sorted(t["steps"], key=lambda s: s["rate"])
        xs = [s["rate"] for s in steps]
        color = COLORS.get(name, "black")
        a1.plot(xs, [s["achieved"] for s in steps], "o-", color=color,
                label=f"{name} (frontier {t['frontier']:.0f})")
        a2.plot(xs, [s["p99"] for s in steps], "o-", color=color, label=name)
    top = max((s["rate"] for t in c["targets"].values() for s in t["steps"]), default=1)
    a1.plot([0, top], [0, top], ":", color="black", alpha=0.4)
    a1.set_xlabel("offered rate, req/s")
    a1.set_ylabel("achieved, req/s")
    a1.set_title("Case 3: throughput (open loop)")
    a2.axhline(c["bound_ms"], color="black", ls=":", alpha=0.5)
    a2.set_yscale("log")
    a2.set_xscale("log")
    a2.set_xlabel("offered rate, req/s (log)")
    a2.set_ylabel("p99 latency, ms (log)")
    a2.set_title(f"p99 vs rate (bound {c['bound_ms']:.0f} ms)")
    for ax in (a1, a2):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out / "case3-throughput.png")


def streaming(r: dict[str, Any], out: Path) -> Path | None:
    c = r.get("4")
    if not c:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name in ("direct", "relay"):
        _cdf(a1, c["samples_ms"]["ttft"][name], name, COLORS[name])
        _cdf(a2, c["samples_ms"]["gaps"][name], name, COLORS[name])
    a1.set_xlabel("time to first token, ms")
    a1.set_title("Case 4: time to first token (CDF)")
    a2.set_xlabel("gap between frames, ms")
    a2.set_title(f"inter-frame gaps (upstream paces {c['frame_delay_ms']:.0f} ms)")
    for ax in (a1, a2):
        ax.set_ylabel("fraction")
        ax.grid(True, alpha=0.3)
        ax.legend()
    return _save(fig, out / "case4-streaming.png")


def concurrency(r: dict[str, Any], out: Path) -> Path | None:
    c = r.get("5")
    if not c:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [row["streams"] for row in c["rows"]]
    for name in ("direct", "relay"):
        ax.plot(xs, [row[name]["ttft_p99"] for row in c["rows"]], "o-", color=COLORS[name],
                label=f"{name}: time to first frame p99")
        ax.plot(xs, [row[name]["max_gap_p99"] for row in c["rows"]], "s--",
                color=COLORS[name], label=f"{name}: worst gap per stream, p99")
    ax.axhline(c["stall_ms"], color="black", ls=":", alpha=0.5, label="stall threshold")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("simultaneous streams")
    ax.set_ylabel("ms (log)")
    ax.set_title("Case 5: concurrent streams")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "case5-concurrent-streams.png")


def memory(r: dict[str, Any], out: Path) -> Path | None:
    c = r.get("6")
    if not c or not c.get("samples"):
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([s[0] for s in c["samples"]], [s[1] for s in c["samples"]], color=COLORS["relay"])
    ax.set_xlabel("seconds into the soak")
    ax.set_ylabel("relay RSS, MiB")
    ax.set_title(f"Case 6: relay RSS during {c['soak_seconds']:.0f} s at {c['soak_rate']:.0f} "
                 "req/s")
    ax.grid(True, alpha=0.3)
    return _save(fig, out / "case6-memory.png")


def operator(r: dict[str, Any], out: Path) -> Path | None:
    c = r.get("7")
    if not c or "bulk" not in c:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    curve = c["bulk"]["ready_curve"]
    a1.plot(curve, [(i + 1) / len(curve) * c["bulk"]["providers"] for i in range(len(curve))])
    a1.set_xlabel("seconds after the first create")
    a1.set_ylabel("providers Ready")
    a1.set_title(f"Case 7: {c['bulk']['providers']} providers to Ready")
    _cdf(a2, c["apply_to_ready"]["samples_ms"], "apply-to-Ready", COLORS["relay"])
    a2.set_xlabel("ms")
    a2.set_title("one provider: apply to Ready (CDF)")
    for ax in (a1, a2):
        ax.grid(True, alpha=0.3)
    return _save(fig, out / "case7-operator.png")


def idle(r: dict[str, Any], out: Path) -> Path | None:
    c = r.get("9")
    if not c or not c.get("idle", {}).get("samples"):
        return None
    samples, modified = c["idle"]["samples"], c["idle"]["modified_at"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    t = [x[0] for x in samples]
    a1.plot(t, [x[3] - samples[0][3] for x in samples], label="re-checks (upstream)",
            color=COLORS["direct"])
    a1.step([0.0, *modified, t[-1]], [0, *range(1, len(modified) + 1), len(modified)],
            where="post", label="MODIFIED events (watch)", color=COLORS["litellm"])
    a1.set_xlabel("seconds at rest")
    a1.set_ylabel("count")
    a1.set_title(f"Case 9: {c['providers']} providers at rest, re-checked every "
                 f"{c['interval_s']:.0f} s")
    a1.legend()
    a2.plot(t, [x[1] for x in samples], color=COLORS["relay"])
    a2.set_xlabel("seconds at rest")
    a2.set_ylabel("operator RSS, MiB")
    a2.set_title("operator RSS at rest")
    for ax in (a1, a2):
        ax.grid(True, alpha=0.3)
    return _save(fig, out / "case9-idle.png")


def all_figures(r: dict[str, Any], out: Path) -> list[tuple[str, Path]]:
    out.mkdir(parents=True, exist_ok=True)
    made: list[tuple[str, Path]] = []
    for title, fn in (("Case 1: latency one at a time", sequential),
                      ("Case 2: latency at fixed rates", rates),
                      ("Case 3: throughput curves", throughput),
                      ("Case 4: streaming", streaming),
                      ("Case 5: concurrent streams", concurrency),
                      ("Case 6: memory", memory), ("Case 7: operator", operator),
                      ("Case 9: the operator at rest", idle)):
        path = fn(r, out)
        if path is not None:
            made.append((title, path))
    return made
