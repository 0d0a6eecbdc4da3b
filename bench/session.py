"""One run's shared state: the control plane, the upstreams, the relay, the endpoints, the
results collected so far, and an RSS sampler for the process under load."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import kube as k
from bench.client import Pool
from bench.config import ROOT, BenchConfig
from bench.loadgen import Endpoint
from bench.procs import Proc
from bench.stack import UPSTREAM_KEY, Stack, Upstream
from bench.wire import encode_request
from chatprovider.kube import KubeClient, KubeConfig
from chatprovider.settings import DEFAULT_TOKEN_AUDIENCE
from chatprovider_tools.controlplane import ControlPlane

__all__ = ["CALLER", "RELAY_NS", "RssSampler", "Session", "chat_endpoint", "until_governed"]

RELAY_NS = "bench-relay"
MODEL = "devserver-chat"
CALLER = "bench-caller"
"""The ServiceAccount (in the relay's namespace) that calls the authenticating relays."""


def chat_endpoint(name: str, port: int, model: str, *, key: str | None = None,
                  stream: bool = False, max_tokens: int | None = None,
                  headers: dict[str, str] | None = None) -> Endpoint:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    if stream:
        body["stream"] = True
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    payload = encode_request("POST", f"127.0.0.1:{port}", "/v1/chat/completions",
                             json.dumps(body).encode(), sent)
    return Endpoint(name, "127.0.0.1", port, payload)


def _governed(port: int, token: str | None, provider: str) -> bool:
    """Whether the relay at ``port`` answers ``provider`` with a quota's headers (not yet,
    when it still refuses a token or a provider it has not caught up with: 401, 403, 503)."""
    body = json.dumps({"model": f"{RELAY_NS}/{provider}/{MODEL}", "max_tokens": 8,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            return resp.headers.get("x-ratelimit-limit-requests") is not None
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403, 503):
            return False
        raise


async def until_governed(port: int, token: str | None, provider: str,
                         timeout: float = 30.0) -> None:
    """Wait until the relay at ``port`` applies a quota to ``provider``."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(_governed, port, token, provider):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the relay at :{port} does not apply the quota on {provider}")
        await asyncio.sleep(0.2)


class RssSampler:
    """Samples a process's RSS and CPU time every ``interval`` while running."""

    def __init__(self, proc: Proc, interval: float = 0.5) -> None:
        self.proc, self.interval = proc, interval
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        t0 = time.monotonic()
        while True:
            self.samples.append((time.monotonic() - t0, self.proc.rss()))
            await asyncio.sleep(self.interval)

    async def stop(self) -> list[tuple[float, float]]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return self.samples

    @property
    def peak(self) -> float:
        return max((s[1] for s in self.samples), default=0.0)


@dataclass
class Session:
    cfg: BenchConfig
    stack: Stack
    plane: ControlPlane | None = None
    kube: KubeClient | None = None
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    relay: Proc | None = None
    litellm: Proc | None = None
    litellm_port: int = 0
    relay_port: int = 0
    relay_key: str | None = None
    """The bearer token the relay is called with (``governed`` variant; None: no
    authentication)."""
    relay_idle_rss: float = 0.0
    relay_load_peak: float = 0.0
    """Peak RSS of the relay under loads it sustains."""
    relay_overload_peak: float = 0.0
    """Peak RSS of the relay including overloads (queues of thousands of requests)."""
    results: dict[str, Any] = field(default_factory=dict)
    pools: dict[tuple[str, int], Pool] = field(default_factory=dict)

    def note_rss(self, peak: float, *, overloaded: bool) -> None:
        self.relay_overload_peak = max(self.relay_overload_peak, peak)
        if not overloaded:
            self.relay_load_peak = max(self.relay_load_peak, peak)

    # -- set-up -----------------------------------------------------------------------------
    async def start_plane(self) -> None:
        self.plane = await asyncio.to_thread(lambda: ControlPlane().start())
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f",
                     str(ROOT / "crds"), check=False)  # the loop below is what counts
        self.kube = KubeClient(KubeConfig.load(str(self.plane.kubeconfig)))
        deadline = time.monotonic() + 60
        while self.kubectl("get", "chatproviders", "-A", check=False).returncode != 0:
            if time.monotonic() > deadline:  # discovery can lag behind Established
                raise RuntimeError("the ChatProvider CRD is not served")
            await asyncio.sleep(0.2)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.plane is not None
        return subprocess.run(  # noqa: S603 - our own kubectl
            [str(self.plane.binaries.kubectl), f"--kubeconfig={self.plane.kubeconfig}", *args],
            capture_output=True, text=True, check=check, timeout=120)

    @property
    def kubeconfig(self) -> Path:
        assert self.plane is not None
        return self.plane.kubeconfig

    def writes(self) -> k.Writes:
        assert self.plane is not None
        return k.apiserver_writes(self.plane.binaries.kubectl, self.plane.kubeconfig)

    def start_upstreams(self) -> None:
        cfg = self.cfg
        self.upstreams["fast"] = self.stack.upstream("fast")
        pieces = max(cfg.stream_pieces, cfg.long_pieces)
        self.upstreams["paced"] = self.stack.upstream("paced", pieces, cfg.stream_frame_delay)
        self.upstreams["slow"] = self.stack.upstream("slow", pieces, cfg.long_frame_delay)
        if "3" in cfg.cases:  # the compiled generator's frontier needs a compiled upstream
            self.upstreams["static"] = self.stack.static_upstream(MODEL)

    def relay_providers(self) -> list[dict[str, Any]]:
        u = self.upstreams
        bodies = [k.provider(RELAY_NS, "fast", f"{u['fast'].base}/v1"),
                  k.provider(RELAY_NS, "paced", f"{u['paced'].base}/v1")]
        if "10" in self.cfg.cases:  # the fast upstream again, under case 10's ChatQuota
            bodies.append(k.provider(RELAY_NS, "fast-quota", f"{u['fast'].base}/v1"))
        if "static" in u:
            bodies.append(k.provider(RELAY_NS, "static", f"{u['static'].base}/v1"))
        bodies += [k.provider(RELAY_NS, f"slow-{i}", f"{u['slow'].base}/v1")
                   for i in range(self.cfg.long_providers)]
        return bodies

    async def start_relay_side(self) -> None:
        """Providers made Ready by the operator (then stopped), and the relay alone."""
        assert self.kube is not None
        await k.create_namespace(self.kube, RELAY_NS)
        await k.put_secret(self.kube, RELAY_NS, UPSTREAM_KEY)
        bodies = self.relay_providers()
        watch = k.ReadyWatch(self.kube, RELAY_NS)
        await watch.start()
        operator = self.stack.operator(self.kubeconfig, RELAY_NS, tag="operator-relay-ns")
        await k.create_providers(self.kube, bodies)
        ok = await watch.wait([b["metadata"]["name"] for b in bodies], 60)
        await watch.stop()
        self.stack.stop(operator)
        if not ok:
            raise RuntimeError(f"providers not Ready:\n{operator.tail()}")
        auth = "none"
        if self.cfg.relay_variant == "governed":
            auth = "kubernetes"
            await k.create_quota(self.kube, k.quota(RELAY_NS, "bench-governed",
                                                    [b["metadata"]["name"] for b in bodies]))
            self.relay_key = await k.caller_token(self.kube, RELAY_NS, CALLER,
                                                  DEFAULT_TOKEN_AUDIENCE)
        self.relay, self.relay_port = self.stack.relay(self.kubeconfig, RELAY_NS, auth=auth)
        await self._wait_models(len(bodies))
        if self.relay_key is not None:  # governed: its quota applies before any case runs
            await until_governed(self.relay_port, self.relay_key, "fast")
        await asyncio.sleep(1.0)
        self.relay_idle_rss = self.relay.rss()

    async def _wait_models(self, count: int) -> None:
        headers = {"Authorization": f"Bearer {self.relay_key}"} if self.relay_key else {}
        request = urllib.request.Request(f"http://127.0.0.1:{self.relay_port}/v1/models",
                                         headers=headers)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - loopback
                models = json.loads(resp.read())["data"]
            if len({m["owned_by"] for m in models}) >= count:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("the relay does not list every provider")

    def start_litellm(self) -> None:
        """Start LiteLLM early (it takes a while to import); :meth:`litellm_ready` waits."""
        self.litellm, self.litellm_port = self.stack.litellm(self.upstreams["fast"],
                                                             UPSTREAM_KEY)

    async def litellm_ready(self) -> int:
        from bench.procs import wait_http

        if self.litellm is None:
            self.start_litellm()
        assert self.litellm is not None
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{self.litellm_port}"
                                "/health/liveliness", 180, self.litellm)
        return self.litellm_port

    # -- endpoints --------------------------------------------------------------------------
    def direct(self, upstream: str = "fast", **kw: Any) -> Endpoint:
        return chat_endpoint("direct", self.upstreams[upstream].port, MODEL, key=UPSTREAM_KEY,
                             **kw)

    def via_relay(self, provider: str = "fast", **kw: Any) -> Endpoint:
        return chat_endpoint("relay", self.relay_port, self.via_relay_model(provider),
                             key=self.relay_key, **kw)

    @staticmethod
    def via_relay_model(provider: str = "fast") -> str:
        return f"{RELAY_NS}/{provider}/{MODEL}"

    async def pool(self, endpoint: Endpoint, warm: int = 8) -> Pool:
        key = (endpoint.host, endpoint.port)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = Pool(endpoint.host, endpoint.port)
        await pool.warm(warm)
        return pool

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()
        self.pools.clear()
        if self.kube is not None:
            await self.kube.close()
        self.stack.stop_all()
        if self.plane is not None:
            await asyncio.to_thread(self.plane.stop)


def pin_driver(cfg: BenchConfig) -> None:
    if cfg.driver_cpus:
        os.sched_setaffinity(0, cfg.driver_cpus)
