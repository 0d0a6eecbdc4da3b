"""Driving load: one request at a time, an open loop at a fixed arrival rate, or many
long-lived streams at once.

Open loop: request *i* is due at ``t0 + i / rate`` whatever happened to the others, and its
latency is measured from that due time, so time spent queued behind a slow answer (in the
client or the server) is counted, not omitted (Gil Tene's "coordinated omission"). The send
lag (actual minus due send time) is recorded to show the generator itself kept up.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.client import Pool, Request

__all__ = ["Endpoint", "RunResult", "open_loop", "sequential", "streams"]


@dataclass(frozen=True)
class Endpoint:
    """Where to send, and the exact bytes of the request."""

    name: str
    host: str
    port: int
    payload: bytes


@dataclass
class RunResult:
    """The requests of one measured window."""

    endpoint: str
    rate: float | None
    duration: float
    requests: list[Request] = field(default_factory=list)
    lost: int = 0
    """Requests still unanswered when the window's grace period ran out (counted as errors)."""

    @property
    def ok(self) -> list[Request]:
        return [r for r in self.requests if r.ok]

    @property
    def errors(self) -> int:
        return sum(1 for r in self.requests if not r.ok) + self.lost

    @property
    def latencies(self) -> list[float]:
        return [r.latency for r in self.requests if r.ok]

    @property
    def send_lags(self) -> list[float]:
        return [r.sent - r.intended for r in self.requests if r.sent]

    @property
    def achieved(self) -> float:
        return len(self.ok) / self.duration if self.duration else 0.0


async def sequential(pool: Pool, endpoint: Endpoint, count: int,
                     track_events: bool = False) -> list[Request]:
    """``count`` requests, each sent when the previous one has completed."""
    loop = asyncio.get_running_loop()
    done: list[Request] = []
    for _ in range(count):
        fut: asyncio.Future[Request] = loop.create_future()
        req = Request(loop.time(), endpoint.payload, track_events,
                      on_done=lambda r, f=fut: f.done() or f.set_result(r))
        pool.submit(req)
        done.append(await fut)
    return done


async def open_loop(pool: Pool, endpoint: Endpoint, rate: float, duration: float,
                    grace: float = 5.0, track_events: bool = False,
                    stop: asyncio.Event | None = None) -> RunResult:
    """Send at ``rate`` per second for ``duration`` seconds (or until ``stop`` is set); wait
    up to ``grace`` seconds for the last answers. Unanswered requests are errors.

    The event loop's timers wake with millisecond granularity (epoll), which would delay sends
    by up to 1 ms; a ticker thread (``time.sleep`` is precise to ~0.1 ms) says when requests
    are due, and the loop sends every due request at once.
    """
    loop = asyncio.get_running_loop()
    total = max(1, int(rate * duration))
    result = RunResult(endpoint.name, rate, duration)
    finished = asyncio.Event()
    state = {"remaining": total, "sent": 0, "stopped": False}
    interval = 1.0 / rate
    t0 = loop.time() + 0.02

    def on_done(_: Request) -> None:
        state["remaining"] -= 1
        if state["remaining"] == 0:
            finished.set()

    def fire(upto: int) -> None:
        if state["stopped"]:
            return
        i = state["sent"]
        while i < upto:
            req = Request(t0 + i * interval, endpoint.payload, track_events, on_done=on_done)
            result.requests.append(req)
            pool.submit(req)
            i += 1
        state["sent"] = i

    def ticker() -> None:
        i = 0
        while i < total and not state["stopped"]:
            delay = t0 + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            upto = min(total, int((time.monotonic() - t0) / interval) + 1)
            if upto > i:
                loop.call_soon_threadsafe(fire, upto)
                i = upto

    thread = threading.Thread(target=ticker, name="open-loop ticker", daemon=True)
    thread.start()
    ends = asyncio.ensure_future(finished.wait())
    waits: list[asyncio.Future[Any]] = [ends]
    if stop is not None:
        waits.append(asyncio.ensure_future(stop.wait()))
    await asyncio.wait(waits, timeout=duration + 0.05, return_when=asyncio.FIRST_COMPLETED)
    if stop is not None and stop.is_set():
        state["stopped"] = True
    await asyncio.to_thread(thread.join)
    state["stopped"] = True
    unsent = total - state["sent"]
    state["remaining"] -= unsent
    if state["remaining"] <= 0:
        finished.set()
    try:
        async with asyncio.timeout(grace):
            await finished.wait()
    except TimeoutError:
        pass
    for fut in waits:
        fut.cancel()
    result.duration = min(duration, max(1e-9, loop.time() - t0)) if unsent else duration
    if state["remaining"] > 0:
        lost = pool.abandon()
        result.lost = len(lost)
        result.requests = [r for r in result.requests if r.finished]
    return result


async def streams(pool: Pool, endpoints: list[Endpoint], count: int, ramp: float,
                  timeout: float) -> list[Request]:
    """``count`` streamed requests (cycling over ``endpoints``, which share host and port)
    opened over ``ramp`` seconds, each tracked event by event; returns them once all have
    ended (or ``timeout`` passed: the rest are abandoned and marked as errors)."""
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()
    remaining = count
    reqs: list[Request] = []

    def on_done(_: Request) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            finished.set()

    t0 = loop.time() + 0.01
    step = ramp / count if count else 0.0
    for i in range(count):
        due = t0 + i * step
        delay = due - loop.time()
        if delay > 0.001:
            await asyncio.sleep(delay)
        req = Request(due, endpoints[i % len(endpoints)].payload, True, on_done=on_done)
        reqs.append(req)
        pool.submit(req)
    try:
        async with asyncio.timeout(timeout):
            await finished.wait()
    except TimeoutError:
        now = loop.time()
        for req in pool.abandon():
            req.error, req.finished = "timeout", now
    return reqs
