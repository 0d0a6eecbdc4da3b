"""The processes of a run: control plane, bench upstreams, operator, relay, LiteLLM, Portkey,
nginx, and where oha's binary is.

Every server listens on 127.0.0.1 only. With pinning on, the proxy under test (relay, LiteLLM,
Portkey or nginx) runs alone on CPU 1; the load generator (this process) and the upstreams
share CPU 0; the control plane and the operator may use both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.config import ROOT, BenchConfig
from bench.procs import Proc, free_port, wait_http

__all__ = ["LITELLM_VENV", "OHA", "PORTKEY_DIR", "Stack", "Upstream", "litellm_version",
           "nginx_version", "portkey_headers", "portkey_version"]

CACHE = Path(os.environ.get("CHATPROVIDER_CACHE") or Path.home() / ".cache" / "chatprovider")
LITELLM_VENV = CACHE / "upstreams" / "litellm-venv"
PORTKEY_DIR = CACHE / "portkey"
"""Portkey's open-source gateway, from npm (bench/install.sh)."""
PORTKEY_SERVER = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / \
    "start-server.js"
OHA = CACHE / "cargo" / "bin" / "oha"
"""The compiled open-loop load generator, built from crates.io (bench/install.sh)."""
UPSTREAM_KEY = "bench-key-0"
"""The key the Secret holds at first; the upstreams accept every key starting with bench-."""


@dataclass
class Upstream:
    name: str
    port: int
    proc: Proc

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _clean_env(code: Path | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env["PYTHONPATH"] = f"{code}:{ROOT}" if code is not None else str(ROOT)
    env.update(extra)
    return env


class Stack:
    """Starts and stops everything; all logs go to ``<results>/logs``."""

    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.logs = cfg.results_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []
        self.python = sys.executable
        self.chatprovider = str(Path(sys.executable).with_name("chatprovider"))

    def env(self) -> dict[str, str]:
        return _clean_env(self.cfg.code)

    def _start(self, proc: Proc) -> Proc:
        self.procs.append(proc.start())
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    # -- upstreams --------------------------------------------------------------------------
    def upstream(self, name: str, frames: int = 8, frame_delay: float = 0.0) -> Upstream:
        port = free_port()
        proc = self._start(Proc(
            f"upstream-{name}",
            [self.python, "-m", "bench.upstream", "--port", str(port), "--stream-frames",
             str(frames), "--frame-delay", str(frame_delay)],
            self.logs / f"upstream-{name}.log", cpus=self.cfg.driver_cpus or self.cfg.all_cpus,
            env=self.env(), cwd=ROOT))
        wait_http(f"http://127.0.0.1:{port}/health", 20, proc)
        return Upstream(name, port, proc)

    def static_upstream(self, model: str) -> Upstream:
        """An nginx answering every chat completion with the same fixed one, and ``GET
        /v1/models`` with ``model``: an upstream far cheaper than any proxy under test, so
        that a compiled generator measures the proxy and not the upstream. Pinned with the
        generator."""
        models = {"object": "list", "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": "bench"}]}
        routes = (f"location = /v1/models {{ return 200 '{json.dumps(models)}'; }}\n"
                  f"        location / {{ return 200 '{json.dumps(static_answer(model))}'; }}")
        proc, port = self._nginx("upstream-static", "", routes,
                                 self.cfg.driver_cpus or self.cfg.all_cpus)
        return Upstream("static", port, proc)

    # -- operator and relay -----------------------------------------------------------------
    def operator(self, kubeconfig: Path, namespace: str, tag: str = "operator") -> Proc:
        """``chatprovider run`` (operator with its embedded relay) on every CPU."""
        return self._start(Proc(
            tag,
            [self.chatprovider, "run", "--kubeconfig", str(kubeconfig), "-n", namespace,
             "--relay-auth", "none", "--relay-host", "127.0.0.1", "--relay-port", "0",
             "--health-port", "0"],
            self.logs / f"{tag}.log", cpus=self.cfg.all_cpus, env=self.env(), cwd=ROOT))

    def relay(self, kubeconfig: Path, namespace: str, *extra: str, tag: str = "relay",
              auth: str = "none") -> tuple[Proc, int]:
        """``chatprovider relay`` (the relay alone, with ``extra`` flags and ``--relay-auth
        auth``), pinned like every proxy under test."""
        port = free_port()
        proc = self._start(Proc(
            tag,
            [self.chatprovider, "relay", "--kubeconfig", str(kubeconfig), "-n", namespace,
             "--relay-auth", auth, "--relay-host", "127.0.0.1", "--relay-port", str(port),
             *extra],
            self.logs / f"{tag}.log", cpus=self.cfg.proxy_cpus or self.cfg.all_cpus,
            env=self.env(), cwd=ROOT))
        wait_http(f"http://127.0.0.1:{port}/readyz", 60, proc)
        return proc, port

    # -- the references ---------------------------------------------------------------------
    def litellm(self, upstream: Upstream, key: str) -> tuple[Proc, int]:
        """LiteLLM's proxy, one worker, one model whose api_base is ``upstream``; no auth."""
        exe = LITELLM_VENV / "bin" / "litellm"
        if not exe.exists():
            raise RuntimeError(f"{exe} missing: run bench/install.sh")
        workdir = self.cfg.results_dir / "litellm"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "config.yaml"
        config.write_text(yaml.safe_dump({
            "model_list": [{"model_name": "devserver-chat", "litellm_params": {
                "model": "openai/devserver-chat", "api_base": f"{upstream.base}/v1",
                "api_key": key}}],
            "litellm_settings": {"telemetry": False},
        }))
        port = free_port()
        proc = self._start(Proc(
            "litellm",
            [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
             "--num_workers", "1", "--telemetry", "False"],
            self.logs / "litellm.log", cpus=self.cfg.proxy_cpus or self.cfg.all_cpus,
            env=_clean_env(None, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR",
                           PYTHONPATH=""), cwd=workdir))
        return proc, port

    def portkey(self) -> tuple[Proc, int]:
        """Portkey's gateway (node, one process, headless: no console UI); the upstream is named
        per request (:func:`portkey_headers`), as Portkey's own "custom host" guide does."""
        node = shutil.which("node")
        if node is None or not PORTKEY_SERVER.exists():
            raise RuntimeError(f"{PORTKEY_SERVER} or node missing: run bench/install.sh")
        port = free_port()
        proc = self._start(Proc(
            "portkey", [node, str(PORTKEY_SERVER), f"--port={port}", "--headless"],
            self.logs / "portkey.log", cpus=self.cfg.proxy_cpus or self.cfg.all_cpus,
            env=_clean_env(None, NODE_ENV="production")))
        wait_http(f"http://127.0.0.1:{port}/", 60, proc)
        return proc, port

    def nginx(self, upstream: Upstream) -> tuple[Proc, int]:
        """nginx as a plain reverse proxy: one worker, keep-alive upstream, unbuffered."""
        return self._nginx(
            f"nginx-{upstream.name}",
            f"upstream devserver {{ server 127.0.0.1:{upstream.port}; keepalive 256; }}",
            PROXY_ROUTES, self.cfg.proxy_cpus or self.cfg.all_cpus)

    def _nginx(self, name: str, upstreams: str, routes: str,
               cpus: set[int]) -> tuple[Proc, int]:
        """One nginx worker on ``cpus``, serving ``routes`` (location blocks) with
        ``upstreams`` (upstream blocks), its files under the results' ``name``."""
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        prefix = self.cfg.results_dir / name
        prefix.mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, upstreams=upstreams,
                                          routes=routes))
        proc = self._start(Proc(
            name, [exe, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
            self.logs / f"{name}.log", cpus=cpus, env=self.env()))
        wait_http(f"http://127.0.0.1:{port}/health", 10, proc)
        return proc, port


NGINX_CONF = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    default_type application/json;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    {upstreams}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_requests 1000000;
        {routes}
    }}
}}
"""

PROXY_ROUTES = """location / {
            proxy_pass http://devserver;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }"""


def static_answer(model: str) -> dict[str, object]:
    """The one chat completion the static upstream answers."""
    return {"id": "chatcmpl-static", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


def litellm_version() -> str:
    py = LITELLM_VENV / "bin" / "python"
    if not py.exists():
        return "not installed"
    out = subprocess.run(  # noqa: S603
        [str(py), "-c", "from importlib.metadata import version; print(version('litellm'))"],
        capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or "unknown"


def portkey_headers(upstream: Upstream) -> dict[str, str]:
    """The headers that send a request through Portkey to ``upstream`` (OpenAI's API)."""
    return {"x-portkey-provider": "openai", "x-portkey-custom-host": f"{upstream.base}/v1",
            "Authorization": f"Bearer {UPSTREAM_KEY}"}


def portkey_version() -> str:
    try:
        package = json.loads((PORTKEY_SERVER.parents[1] / "package.json").read_text())
    except (OSError, ValueError):
        return "not installed"
    return str(package.get("version", "unknown"))


def nginx_version() -> str:
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    try:
        out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10)  # noqa: S603
    except OSError:
        return "not installed"
    return out.stderr.strip().split("/")[-1] or "unknown"
