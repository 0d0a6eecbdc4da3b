"""The process's heap and Python's cyclic garbage collector.

A full (generation 2) collection walks every object the collector tracks, and stops the event
loop while it does. A relay that has listed its providers, Secrets, quotas and ChatModels holds
about 100,000 of them at rest; under load a full walk took 40-100 ms, and every request in
flight waited for it (measured on case 3's open-loop generator: at 1,500 req/s, p95 2 ms but
p99 33 ms and p99.9 118 ms, one full collection per few seconds; BENCHMARKS.md, "Garbage
collector pauses").

So, once the process is ready (what it loads at start is loaded), :func:`freeze_when_ready`
collects once and moves every object alive then out of the collector's walks
(:func:`gc.freeze`). What the process allocates afterwards is collected as before, and frozen
objects are still freed by reference counting when nothing refers to them; only a reference
cycle made of objects alive at that moment would never be collected, which is why this happens
once per process and not on a timer.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

__all__ = ["freeze_when_ready"]

log = logging.getLogger(__name__)


async def freeze_when_ready(ready: Callable[[], bool], interval: float = 0.5) -> int:
    """Wait until ``ready()`` (checked every ``interval`` seconds), then collect and freeze the
    heap; returns how many objects are frozen. A ``ready`` that raises is logged, and nothing
    is frozen (the process runs on, as it would without this)."""
    try:
        while not ready():
            await asyncio.sleep(interval)
    except Exception as exc:  # noqa: BLE001 - an optimisation must not stop the process
        log.error("the heap was not frozen: %s", type(exc).__name__, exc_info=exc)
        return 0
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("ready: the %d objects loaded at start are out of the garbage collector's walks",
             frozen)
    return frozen
