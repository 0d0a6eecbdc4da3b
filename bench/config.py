"""What the suite runs, at full size or as a smoke test: one frozen object built from flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

__all__ = ["ROOT", "BenchConfig", "full", "smoke"]

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Sizes and knobs of every case. Durations in seconds."""

    smoke: bool = False
    results_dir: Path = ROOT / "bench" / "results"
    """Raw results (JSON), logs and profiles; gitignored."""
    figures_dir: Path = ROOT / "docs" / "bench"
    """PNG figures referenced by the report (committed)."""
    report: Path | None = ROOT / "BENCHMARKS.md"
    """Where the report is written (None: not written)."""
    code: Path | None = None
    """Source root (holding ``chatprovider/``) of the code under test: a snapshot of the
    committed tree by default, so that uncommitted work in the tree does not leak into the
    numbers; None: the installed package (the working tree)."""
    commit: str = "worktree"
    """What ``code`` holds (a commit id, or ``worktree``)."""
    pin: bool = True
    """Pin the proxy under test to CPU 1 and the load generator + upstreams to CPU 0."""
    cases: frozenset[str] = frozenset({"1", "2", "3", "4", "5", "6", "7", "8", "9", "10",
                                       "11"})
    relay_variant: Literal["none", "governed"] = "none"
    """How the session's relay is set up: ``none`` (no authentication, no quota), or
    ``governed``: ``--relay-auth kubernetes`` (TokenReview and SubjectAccessReview answers
    cached, as in production), called with a ServiceAccount's bound token, and a ChatQuota
    (counters in memory) governing every provider it relays, with limits far above what any
    case sends. Case 10 sets up its own relays and runs only with ``none``."""
    # 1. added latency, one request at a time
    seq_rounds: int = 20
    seq_per_round: int = 100
    # 11. requests in flight (closed loop)
    concurrency: tuple[int, ...] = (16, 64)
    concurrency_rounds: int = 6
    concurrency_per_caller: int = 50
    # 2. fixed rates
    rates: tuple[int, ...] = (100, 250, 500, 1000)
    rate_seconds: float = 10.0
    # 3. throughput frontier
    frontier_bound_ms: float = 50.0
    """A rate passes when p99 latency ≤ this, no error, and ≥ 98% of it was achieved."""
    frontier_start: float = 100.0
    frontier_max: float = 20_000.0
    frontier_step_seconds: float = 4.0
    frontier_refine: int = 3
    wrk_seconds: float = 5.0
    wrk_connections: int = 64
    compiled_frontier_start: float = 1000.0
    compiled_frontier_max: float = 80_000.0
    compiled_connections: int = 256
    """The frontier again with oha (compiled, open loop) against a static nginx upstream, for
    direct, nginx and the relay: the same rule, on this many connections."""
    # 4. streaming
    stream_rounds: int = 8
    stream_per_round: int = 8
    stream_pieces: int = 20
    stream_frame_delay: float = 0.01
    # 5. concurrent streams
    concurrent_streams: tuple[int, ...] = (256, 512, 1024)
    long_pieces: int = 50
    long_frame_delay: float = 0.1
    long_providers: int = 4
    stall_seconds: float = 1.0
    """A stream stalls when two frames (or the request and its first frame) are further apart."""
    # 6. memory
    soak_seconds: float = 120.0
    soak_rate: float = 300.0
    # 7. operator
    ready_trials: int = 30
    providers: int = 1000
    big_providers: int = 5000
    """0 skips the big step."""
    restart_settle: float = 15.0
    # 8. key rotation
    rotation_trials: int = 20
    rotation_rate: float = 200.0
    # 9. the operator at rest
    idle_providers: int = 1000
    idle_interval: float = 30.0
    """The providers' ``spec.discovery.interval`` (the CRD allows 10 s at least)."""
    idle_seconds: float = 600.0
    """How long nothing changes while the providers are re-checked."""
    idle_sample_seconds: float = 5.0
    """Operator RSS and CPU, and the upstream's count of checks, are sampled this often."""
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def proxy_cpus(self) -> set[int] | None:
        return {1} if self.pin and self.cpu_count >= 2 else None

    @property
    def driver_cpus(self) -> set[int] | None:
        return {0} if self.pin and self.cpu_count >= 2 else None

    @property
    def all_cpus(self) -> set[int]:
        return set(range(self.cpu_count))


def full() -> BenchConfig:
    return BenchConfig()


def smoke(results_dir: Path | None = None) -> BenchConfig:
    """Every case at tiny sizes (correctness of the harness, not numbers): under 3 minutes."""
    base = BenchConfig(smoke=True)
    return replace(
        base,
        results_dir=results_dir or base.results_dir / "smoke",
        figures_dir=(results_dir or base.results_dir / "smoke") / "figures",
        report=None,
        seq_rounds=2, seq_per_round=10,
        concurrency=(2, 4), concurrency_rounds=1, concurrency_per_caller=5,
        rates=(100, 250), rate_seconds=0.5,
        frontier_start=200.0, frontier_max=400.0, frontier_step_seconds=0.5,
        frontier_refine=0, wrk_seconds=1.0, wrk_connections=8,
        compiled_frontier_start=200.0, compiled_frontier_max=400.0, compiled_connections=8,
        stream_rounds=1, stream_per_round=2, stream_pieces=4,
        concurrent_streams=(8, 16), long_pieces=5, long_frame_delay=0.05, long_providers=2,
        soak_seconds=2.0, soak_rate=100.0,
        ready_trials=2, providers=5, big_providers=10, restart_settle=2.0,
        rotation_trials=2, rotation_rate=50.0,
        idle_providers=5, idle_interval=10.0, idle_seconds=25.0, idle_sample_seconds=1.0,
    )
