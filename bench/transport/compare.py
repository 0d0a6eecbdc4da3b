"""Which HTTP client should the relay use upstream? Its own (``Transports.pool``: asyncio
protocols, llhttp), aiohttp's (``Transports.session``, the prober's) and httpx.AsyncClient.

Runs on loopback only, against the dev server started as a separate process (so the server does
not share the client's GIL), and measures the relay's hot path: POST /v1/chat/completions with
a small JSON body, reading the answer (``--stream``: an SSE answer, read chunk by chunk).

* sequential latency: p50 / p99 of one request at a time;
* throughput at concurrency 1, 64 and 256 (requests per second, and p99 latency).

Every loop is bounded in requests and in time, and stops by itself::

    ~/.cache/chatprovider/venv/bin/python bench/transport/compare.py [--requests 2000] [--stream]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import httpx

from chatprovider.domain.egress import EgressPolicy
from chatprovider.upstream.pool import Pool
from chatprovider.upstream.transport import TransportProfile, Transports

MODEL = "devserver-chat"
Call = Callable[[], Awaitable[None]]


@dataclass
class Result:
    client: str
    scenario: str
    requests: int
    seconds: float
    latencies: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int, frames: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatprovider_tools.devserver", "--port", str(port),
         "--stream-frames", str(frames), "--journal-limit", "100"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the dev server did not start")


async def measure(name: str, scenario: str, call: Call, total: int, concurrency: int,
                  time_limit: float) -> Result:
    latencies: list[float] = []
    remaining = total
    deadline = time.perf_counter() + time_limit

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(name, scenario, len(latencies), time.perf_counter() - start, latencies)


def aiohttp_call(session: aiohttp.ClientSession, url: str, body: bytes, stream: bool) -> Call:
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}

    async def call() -> None:
        async with session.post(url, data=body, headers=headers) as resp:
            if stream:
                while await resp.content.readany():
                    pass
            else:
                await resp.read()
            assert resp.status == 200

    return call


def pool_call(pool: Pool, url: str, body: bytes) -> Call:
    headers = [("Content-Type", "application/json"), ("Accept-Encoding", "identity")]

    async def call() -> None:
        resp = await pool.post(url, headers, body, 5.0)
        while await resp.readany():
            pass
        assert resp.status == 200
        resp.release()

    return call


def httpx_call(client: httpx.AsyncClient, url: str, body: bytes, stream: bool) -> Call:
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}

    async def call() -> None:
        async with client.stream("POST", url, content=body, headers=headers) as resp:
            async for _ in resp.aiter_raw():
                pass
            assert resp.status_code == 200

    return call


async def run(args: argparse.Namespace, port: int) -> list[Result]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = json.dumps({"model": MODEL, "stream": args.stream,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    results: list[Result] = []
    transports = Transports(EgressPolicy(), pool_size=512)
    session = transports.session(TransportProfile())
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    client = httpx.AsyncClient(limits=limits, timeout=60)
    calls = {"pool": pool_call(transports.pool(TransportProfile()), url, body),
             "aiohttp": aiohttp_call(session, url, body, args.stream),
             "httpx": httpx_call(client, url, body, args.stream)}
    try:
        for name, call in calls.items():
            await measure(name, "warm-up", call, 200, 8, 10)
            results.append(await measure(name, "sequential", call, args.requests, 1, 60))
            for concurrency in (1, 64, 256):
                results.append(await measure(name, f"c={concurrency}", call,
                                             args.requests * (1 if concurrency == 1 else 3),
                                             concurrency, 60))
    finally:
        await client.aclose()
        await transports.close()
    return results


def table(results: list[Result], stream: bool) -> str:
    lines = [f"POST /v1/chat/completions ({'SSE stream' if stream else 'JSON'}), loopback, "
             f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, aiohttp "
             f"{aiohttp.__version__}, httpx {httpx.__version__}",
             f"{'client':8} {'scenario':11} {'requests':>8} {'req/s':>9} {'p50 ms':>8} "
             f"{'p99 ms':>8}"]
    for r in results:
        lines.append(f"{r.client:8} {r.scenario:11} {r.requests:8d} {r.rps:9.0f} "
                     f"{r.pct(0.5):8.2f} {r.pct(0.99):8.2f}")
    by = {(r.client, r.scenario): r for r in results}
    for scenario in ("sequential", "c=1", "c=64", "c=256"):
        a, h, p = (by.get((c, scenario)) for c in ("aiohttp", "httpx", "pool"))
        if a and p:
            lines.append(f"  {scenario:11} pool/aiohttp throughput: {p.rps / a.rps:.2f}x, "
                         f"p99: {p.pct(0.99):.2f} vs {a.pct(0.99):.2f} ms")
        if a and h:
            lines.append(f"  {scenario:11} aiohttp/httpx throughput: {a.rps / h.rps:.2f}x, "
                         f"p99: {a.pct(0.99):.2f} vs {h.pct(0.99):.2f} ms "
                         f"(median of latencies {statistics.median(a.latencies) * 1000:.2f} vs "
                         f"{statistics.median(h.latencies) * 1000:.2f} ms)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests per scenario (x3 at concurrency 64 and 256)")
    parser.add_argument("--stream", action="store_true", help="SSE answers, read chunk-wise")
    parser.add_argument("--frames", type=int, default=8, help="frames per streamed answer")
    args = parser.parse_args()
    port = free_port()
    server = start_server(port, args.frames)
    try:
        results = asyncio.run(run(args, port))
    finally:
        server.terminate()
        server.wait(10)
    print(table(results, args.stream))


if __name__ == "__main__":
    main()
