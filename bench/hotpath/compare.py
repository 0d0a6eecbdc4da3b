"""Which HTTP stack could carry the relay's hot path? The same minimal hop
(bench/hotpath/proxies.py) on five Python stacks (aiohttp's server and client, today's;
aiohttp's or granian's server with aiohttp's client or a raw llhttp client; httptools on both
sides), beside nginx as a compiled proxy, all pinned alone to CPU 1; the upstream (nginx
answering a fixed chat completion) and the load generator (wrk, compiled, closed loop) on
CPU 0. Each target in rotating rounds, in one run:

* one request at a time (wrk -c1): p50 / p99, and what each adds over the upstream alone;
* 64 connections (wrk -c64): requests per second and p99.

The upstream alone, through the same wrk, is the ceiling of the generator + upstream pair: a
proxy's figure below it is the proxy's own. Loopback only; every step is bounded in time::

    ~/.cache/chatprovider/venv/bin/python -m bench.hotpath.compare [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.cases.throughput import parse_wrk
from bench.config import ROOT
from bench.stack import static_answer

ANSWER = json.dumps(static_answer("bench"))
BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hello"}]})
PROXY_CPU, DRIVER_CPU = "1", "0"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on {port}")


def _nginx(work: Path, name: str, port: int, body: str) -> list[str]:
    conf = work / f"{name}.conf"
    conf.write_text(
        "worker_processes 1; daemon off; error_log stderr error; pid " + str(work / name)
        + ".pid;\nevents { worker_connections 4096; }\nhttp { access_log off;\n"
        f"  client_body_temp_path {work}; proxy_temp_path {work};\n{body}\n"
        f"  server {{ listen 127.0.0.1:{port}; keepalive_requests 1000000;\n"
        + ("    location / { default_type application/json; return 200 '" + ANSWER + "'; }"
           if name == "upstream" else
           "    location / { proxy_pass http://up; proxy_http_version 1.1;\n"
           "      proxy_set_header Connection \"\"; proxy_buffering off; }")
        + "\n  }\n}\n")
    return [shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(work), "-c", str(conf)]


def _wrk(port: int, connections: int, seconds: int, script: Path) -> dict[str, Any]:
    argv = ["taskset", "-c", DRIVER_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
            "--latency", "-s", str(script), f"http://127.0.0.1:{port}/v1/chat/completions"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    parsed = parse_wrk(out)
    return {"rps": parsed["rps"] or 0.0,
            **{p: None if parsed[p] is None else round(parsed[p], 3) for p in ("p50", "p99")},
            "errors": parsed["non_2xx"] + parsed["socket_errors"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hotpath.compare")
    p.add_argument("--seconds", type=int, default=5, help="each wrk run (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="rounds over every target")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hotpath.json")
    args = p.parse_args(argv)
    for tool in ("wrk", "nginx", "taskset"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            sys.exit(f"{tool} is missing: run `bash bench/install.sh`")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path[1:]])}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        script = work / "post.lua"
        script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = '
                          f'"application/json"\nwrk.body = \'{BODY}\'\n')

        def start(name: str, cpu: str, cmd: list[str], port: int,
                  extra: dict[str, str] | None = None) -> None:
            log = stack.enter_context(open(work / f"{name}.log", "wb"))
            proc = subprocess.Popen(["taskset", "-c", cpu, *cmd], env={**env, **(extra or {})},
                                    stdout=subprocess.DEVNULL, stderr=log)
            stack.callback(lambda: (proc.terminate(), proc.wait(timeout=10)))
            _wait(port, proc, name)

        up = _port()
        start("upstream", DRIVER_CPU, _nginx(work, "upstream", up, ""), up)
        ports = {"direct": up}
        py = sys.executable
        for name in ("aiohttp", "aiohttp+raw", "httptools"):
            ports[name] = _port()
            start(name, PROXY_CPU, [py, "-m", "bench.hotpath.proxies", name, str(ports[name]),
                                    str(up)], ports[name])
        for name, app in (("granian", "rsgi_app"), ("granian+raw", "rsgi_app_raw")):
            ports[name] = _port()
            start(name, PROXY_CPU, [
                py, "-m", "granian", "--interface", "rsgi", "--host", "127.0.0.1",
                "--port", str(ports[name]), "--workers", "1", "--runtime-threads", "1",
                "--runtime-mode", "st", "--loop", "uvloop", "--no-ws", "--log-level", "warning",
                f"bench.hotpath.proxies:{app}"], ports[name], {"UPSTREAM_PORT": str(up)})
        ports["nginx"] = _port()
        start("nginx", PROXY_CPU, _nginx(
            work, "nginx", ports["nginx"],
            f"  upstream up {{ server 127.0.0.1:{up}; keepalive 128; }}"), ports["nginx"])
        names = list(ports)
        for name in names:  # warm-up
            _wrk(ports[name], 64, 1, script)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            n: {"c1": [], "c64": []} for n in names}
        for i in range(args.rounds):
            for name in names[i % len(names):] + names[:i % len(names)]:
                for conc in (1, 64):
                    runs[name][f"c{conc}"].append(_wrk(ports[name], conc, args.seconds, script))
                    print(f"[hotpath] round {i + 1} {name} c{conc}: "
                          f"{runs[name][f'c{conc}'][-1]}", flush=True)
    result: dict[str, Any] = {"seconds": args.seconds, "rounds": args.rounds, "targets": {}}
    for name in names:
        med = {}
        for key, rows in runs[name].items():  # the median round of each figure
            med[key] = {f: sorted(r[f] for r in rows if r[f] is not None)[len(rows) // 2]
                        for f in ("rps", "p50", "p99")}
            med[key]["errors"] = sum(r["errors"] for r in rows)
        result["targets"][name] = med
    d = result["targets"]["direct"]["c1"]
    print(f"\n{'target':12} {'added p50 (ms)':>15} {'added p99 (ms)':>15} {'req/s at 64':>12} "
          f"{'p99 at 64 (ms)':>15} {'/ nginx':>8} errors")
    for name, t in result["targets"].items():
        t["added_p50"] = round(t["c1"]["p50"] - d["p50"], 3)
        t["added_p99"] = round(t["c1"]["p99"] - d["p99"], 3)
        t["over_nginx"] = round(t["c64"]["rps"] / result["targets"]["nginx"]["c64"]["rps"], 2)
        errors = t["c1"]["errors"] + t["c64"]["errors"]
        print(f"{name:12} {t['added_p50']:>15} {t['added_p99']:>15} {t['c64']['rps']:>12.0f} "
              f"{t['c64']['p99']:>15} {t['over_nginx']:>8} {errors}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
