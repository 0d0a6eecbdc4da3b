"""Percentiles and the machine's background load (other work on the same CPUs)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["BackgroundLoad", "ms", "pct"]


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1, nearest rank) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    data = sorted(values)
    return data[min(len(data) - 1, max(0, math.ceil(q * len(data)) - 1))]


def ms(values: Sequence[float], q: float) -> float:
    """``pct`` in milliseconds, rounded to 3 decimals."""
    return round(pct(values, q) * 1000, 3)


def _busy_jiffies() -> tuple[int, int]:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _tree_jiffies(root: int) -> int:
    """CPU jiffies of ``root`` and every descendant (the bench's own processes)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            rest = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(rest[1]), []).append(pid)
        stats[pid] = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


class BackgroundLoad:
    """CPU used by processes that are not the bench's, between :meth:`start` and :meth:`stop`,
    as a share of the whole machine (other work on a shared machine perturbs the numbers)."""

    def __init__(self) -> None:
        self._busy = self._total = self._ours = 0

    def start(self) -> BackgroundLoad:
        self._busy, self._total = _busy_jiffies()
        self._ours = _tree_jiffies(os.getpid())
        return self

    def stop(self) -> float:
        busy, total = _busy_jiffies()
        ours = _tree_jiffies(os.getpid())
        span = total - self._total
        if span <= 0:
            return 0.0
        others = (busy - self._busy) - (ours - self._ours)
        return round(max(0.0, others / span) * 100, 1)
