"""Case 3: the throughput frontier of the relay, LiteLLM's proxy, Portkey and nginx, against the
same upstream, each a single process on the same CPU; and the upstream's own ceiling (direct).

The frontier is the highest fixed arrival rate at which p99 latency stays under the bound
with no error and at least 98% of the rate achieved: rates grow by x1.6 until one fails, then
the gap is bisected (a failing rate is tried twice before it counts as failed). ``wrk``
(closed loop, fixed connections) gives a second opinion: the saturation throughput.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

from bench import oha
from bench.client import Pool
from bench.loadgen import Endpoint, RunResult, open_loop
from bench.session import MODEL, RssSampler, Session, chat_endpoint
from bench.stack import UPSTREAM_KEY, portkey_headers
from bench.stats import BackgroundLoad, ms

__all__ = ["compiled", "frontier", "parse_wrk", "run"]


def _passes(res: RunResult, bound_ms: float) -> bool:
    return (res.errors == 0 and res.achieved >= 0.98 * (res.rate or 0)
            and ms(res.latencies, 0.99) <= bound_ms)


def _step(res: RunResult, passed: bool) -> dict[str, Any]:
    lat = res.latencies
    return {"rate": round(res.rate or 0, 1), "achieved": round(res.achieved, 1),
            "errors": res.errors, "p50": ms(lat, 0.5), "p99": ms(lat, 0.99), "pass": passed}


Attempt = Callable[[float], Awaitable[dict[str, Any]]]
"""One window at a rate: its step record, with ``pass``."""


async def frontier(attempt: Attempt, start: float, top: float, refine: int) -> dict[str, Any]:
    """The highest rate whose window passes: x1.6 from ``start`` up to ``top`` until one
    fails, then ``refine`` bisections; a failed rate is tried once more before it counts."""
    steps: list[dict[str, Any]] = []
    passed: float | None = None
    failed: float | None = None

    async def trial(rate: float) -> bool:
        # A failed rate is tried once more: on a shared machine one burst of other work can
        # fail a step that the target sustains (the same rule for every target).
        for _ in range(2):
            step = await attempt(rate)
            steps.append(step)
            await asyncio.sleep(1.0 if step["pass"] else 3.0)  # let a backlog drain
            if step["pass"]:
                return True
        return False

    rate = start
    while rate <= top:
        if await trial(rate):
            passed = rate
            rate *= 1.6
        else:
            failed = rate
            break
    while passed is None and failed is not None and failed > 5:
        rate = failed / 2  # the first rate already failed: walk down
        if await trial(rate):
            passed = rate
        else:
            failed = rate
    for _ in range(refine):
        if passed is None or failed is None:
            break
        mid = (passed + failed) / 2
        if await trial(mid):
            passed = mid
        else:
            failed = mid
    return {"frontier": round(passed or 0.0, 1), "first_fail": failed, "steps": steps}


def python_attempt(ep: Endpoint, seconds: float, bound_ms: float) -> Attempt:
    """A window of the Python open-loop generator (:mod:`bench.loadgen`)."""
    async def attempt(rate: float) -> dict[str, Any]:
        pool = Pool(ep.host, ep.port, max_connections=1024)
        try:
            await pool.warm(16)
            res = await open_loop(pool, ep, rate, seconds, grace=2.0)
        finally:
            await pool.close()
        return _step(res, _passes(res, bound_ms))
    return attempt


def oha_attempt(target: oha.Target, seconds: float, bound_ms: float, connections: int,
                cpus: set[int] | None) -> Attempt:
    """A window of the compiled open-loop generator (:mod:`bench.oha`), on its own thread."""
    async def attempt(rate: float) -> dict[str, Any]:
        window = await asyncio.to_thread(oha.attack, target, rate, seconds, connections, cpus)
        return window.step(bound_ms)
    return attempt


def _request(model: str, key: str | None,
             headers: dict[str, str] | None) -> tuple[dict[str, str], str]:
    """The headers and body every target is sent (``key`` as a bearer token)."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key:
        sent["Authorization"] = f"Bearer {key}"
    return sent, json.dumps({"model": model, "messages": [{"role": "user", "content": "hello"}]})


def wrk(s: Session, ep_host: str, port: int, model: str, key: str | None,
        headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Saturation throughput with wrk (closed loop), POSTing the same body (with ``headers``)."""
    cfg = s.cfg
    script = cfg.results_dir / f"wrk-{port}.lua"
    sent, body = _request(model, key, headers)
    lines = [f'wrk.headers["{name}"] = "{value}"' for name, value in sent.items()]
    script.write_text('wrk.method = "POST"\n' + "\n".join(lines) +
                      f"\nwrk.body = '{body}'\n")
    seconds = max(1, round(cfg.wrk_seconds))
    argv = ["wrk", "-t1", f"-c{cfg.wrk_connections}", f"-d{seconds}s", "--latency",
            "-s", str(script), f"http://{ep_host}:{port}/v1/chat/completions"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True,  # noqa: S603
                             timeout=cfg.wrk_seconds + 60).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": type(exc).__name__}
    parsed = parse_wrk(out)
    return {"rps": parsed["rps"], "p99_ms": parsed["p99"], "non_2xx": parsed["non_2xx"],
            "socket_errors": parsed["socket_errors"]}


def parse_wrk(out: str) -> dict[str, Any]:
    """What ``wrk --latency`` printed: requests/s, p50 and p99 in ms (None when absent),
    non-2xx answers and socket errors."""
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def pct(p: str) -> float | None:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        return float(m.group(1)) * scale[m.group(2)] if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(rps.group(1)) if rps else None, "p50": pct("50"), "p99": pct("99"),
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0}


async def run(s: Session) -> dict[str, Any]:
    cfg = s.cfg
    fast = s.upstreams["fast"]
    nginx, nginx_port = s.stack.nginx(fast)
    portkey, portkey_port = s.stack.portkey()
    litellm_port = await s.litellm_ready()
    via_portkey = portkey_headers(fast)
    targets: dict[str, tuple[Endpoint, int, str, str | None]] = {
        "direct": (s.direct(), fast.port, MODEL, UPSTREAM_KEY),
        "nginx": (chat_endpoint("nginx", nginx_port, MODEL, key=UPSTREAM_KEY), nginx_port,
                  MODEL, UPSTREAM_KEY),
        "relay": (s.via_relay(), s.relay_port, s.via_relay_model(), s.relay_key),
        "litellm": (chat_endpoint("litellm", litellm_port, MODEL), litellm_port, MODEL, None),
        "portkey": (chat_endpoint("portkey", portkey_port, MODEL, headers=via_portkey),
                    portkey_port, MODEL, None),
    }
    procs = {"relay": s.relay, "nginx": nginx, "litellm": s.litellm, "portkey": portkey}
    out: dict[str, Any] = {"bound_ms": cfg.frontier_bound_ms,
                           "step_seconds": cfg.frontier_step_seconds, "targets": {}}
    bg = BackgroundLoad().start()
    for name, (ep, port, model, key) in targets.items():
        proc = procs.get(name)
        sampler = RssSampler(proc).start() if proc is not None else None
        cpu0 = proc.cpu() if proc is not None else 0.0
        result = await frontier(
            python_attempt(ep, cfg.frontier_step_seconds, cfg.frontier_bound_ms),
            cfg.frontier_start, cfg.frontier_max, cfg.frontier_refine)
        result["wrk"] = await asyncio.to_thread(
            wrk, s, "127.0.0.1", port, model, key, via_portkey if name == "portkey" else None)
        if proc is not None and sampler is not None:
            await sampler.stop()
            result["rss_peak_mib"] = round(sampler.peak, 1)
            result["cpu_seconds"] = round(proc.cpu() - cpu0, 1)
            if name == "relay":  # the search drives it into overload on purpose
                s.note_rss(sampler.peak, overloaded=True)
        out["targets"][name] = result
    out["background_cpu_pct"] = bg.stop()
    t = out["targets"]
    if t["litellm"]["frontier"]:
        out["relay_over_litellm"] = round(t["relay"]["frontier"] / t["litellm"]["frontier"], 2)
    if t["portkey"]["frontier"]:
        out["relay_over_portkey"] = round(t["relay"]["frontier"] / t["portkey"]["frontier"], 2)
    if t["nginx"]["frontier"]:
        out["relay_over_nginx"] = round(t["relay"]["frontier"] / t["nginx"]["frontier"], 2)
    w = {k: v["wrk"].get("rps") for k, v in t.items()}
    if w.get("litellm") and w.get("relay"):
        out["wrk_relay_over_litellm"] = round(w["relay"] / w["litellm"], 2)
    s.stack.stop(nginx)
    s.stack.stop(portkey)
    out["compiled"] = await compiled(s)
    s.results["3"] = out
    return out


async def compiled(s: Session) -> dict[str, Any]:
    """The frontier of direct, nginx and the relay measured with oha against the static
    upstream: both ends compiled, so the generator's ceiling (direct) is far above the
    relay's frontier, and is reported so that nginx's can be read against it."""
    cfg = s.cfg
    if not oha.available():
        raise RuntimeError("oha is not installed: run `bash bench/install.sh`")
    static = s.upstreams["static"]
    nginx, nginx_port = s.stack.nginx(static)
    targets = {"direct": (static.port, MODEL, UPSTREAM_KEY),
               "nginx": (nginx_port, MODEL, UPSTREAM_KEY),
               "relay": (s.relay_port, s.via_relay_model("static"), s.relay_key)}
    out: dict[str, Any] = {"generator": "oha (open loop, latency from the scheduled send)",
                           "connections": cfg.compiled_connections, "targets": {}}
    bg = BackgroundLoad().start()
    try:
        for name, (port, model, key) in targets.items():
            headers, body = _request(model, key, None)
            target = oha.Target(f"http://127.0.0.1:{port}/v1/chat/completions", body, headers)
            out["targets"][name] = await frontier(
                oha_attempt(target, cfg.frontier_step_seconds, cfg.frontier_bound_ms,
                            cfg.compiled_connections, cfg.driver_cpus),
                cfg.compiled_frontier_start, cfg.compiled_frontier_max, cfg.frontier_refine)
    finally:
        s.stack.stop(nginx)
    out["background_cpu_pct"] = bg.stop()
    t = out["targets"]
    out["generator_ceiling"] = t["direct"]["frontier"]
    if t["nginx"]["frontier"]:
        out["relay_over_nginx"] = round(t["relay"]["frontier"] / t["nginx"]["frontier"], 3)
    return out
