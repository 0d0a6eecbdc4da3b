"""A one-off comparison of async Kubernetes clients against the real test API server.

It measures what the operator and the relay do with a client: LIST 1,000 ChatProviders, a watch
burst (1,000 ADDED events replayed from a resourceVersion), a watch over a ChatProvider of about
1.4 MiB, and what a watch does with a resourceVersion that is too old (410 Gone). The figures are
recorded in docs/decisions/kube-client.md.

The candidates are not dependencies of the project; install them into a scratch environment and
run it with the workshop on the path::

    python -m venv /tmp/kube-eval
    /tmp/kube-eval/bin/pip install kubernetes_asyncio lightkube kr8s aiohttp pyyaml cryptography
    PYTHONPATH=operator:tools /tmp/kube-eval/bin/python -m bench.kube_clients

A client that is not installed is reported as such; ``ours`` is ``chatprovider.kube``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from chatprovider_tools.controlplane import ControlPlane

GROUP, VERSION, PLURAL, KIND = "ai.chatprovider.dev", "v1alpha1", "chatproviders", "ChatProvider"
ROOT = Path(__file__).resolve().parent.parent
COUNT = 1000
BIG_NS, BURST_NS = "big", "burst"


def _path(ns: str, name: str = "") -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}" + (f"/{name}" if name else "")


def big_status(target_bytes: int) -> dict[str, Any]:
    """A valid status of about ``target_bytes`` of UTF-8: condition messages of 3-byte
    characters (``maxLength`` counts characters, so 32,768 of them are ~96 KiB each)."""
    conditions, size = [], 0
    while size < target_bytes and len(conditions) < 16:
        chars = min(32768, (target_bytes - size) // 3 + 1)
        conditions.append({
            "type": f"Large{len(conditions)}", "status": "True", "reason": "Measured",
            "message": "猫" * chars, "lastTransitionTime": "2026-01-01T00:00:00Z",
        })
        size += chars * 3
    return {"conditions": conditions}


class Raw:
    """Plain aiohttp requests for setting the stage (bodies sent as raw UTF-8)."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    async def __aenter__(self) -> Raw:
        ctx = ssl.create_default_context(cafile=str(self.plane.creds.ca_cert))
        self.s = aiohttp.ClientSession(
            base_url=self.plane.server, connector=aiohttp.TCPConnector(ssl=ctx),
            headers={"Authorization": f"Bearer {self.plane.admin_token}"})
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.s.close()

    async def send(self, method: str, path: str, body: Any,
                   ctype: str = "application/json") -> dict[str, Any]:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        async with self.s.request(method, path, data=data,
                                  headers={"Content-Type": ctype}) as r:
            text = await r.text()
            if r.status >= 300:
                raise RuntimeError(f"{method} {path}: {r.status} {text[:300]}")
            return json.loads(text)  # type: ignore[no-any-return]


async def stage(plane: ControlPlane) -> tuple[str, int]:
    """1,000 ChatProviders in ``burst`` and one big one in ``big``; the resourceVersion before
    the burst, and the big object's size as the API server serves it."""
    async with Raw(plane) as raw:
        for ns in (BURST_NS, BIG_NS):
            await raw.send("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        while True:  # the new resource can take a moment to be served
            async with raw.s.get(_path(BURST_NS)) as r:
                before = await r.json()
            if r.status == 200:
                break
            await asyncio.sleep(0.2)
        rv0 = before["metadata"]["resourceVersion"]
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                await raw.send("POST", _path(BURST_NS), {
                    "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
                    "metadata": {"name": f"p{i:04d}", "labels": {"bench": "list"}},
                    "spec": {"endpoint": f"http://upstream-{i}.example:8000/v1",
                             "serverType": "generic"}})

        await asyncio.gather(*(one(i) for i in range(COUNT)))
        await raw.send("POST", _path(BIG_NS), {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": "big"},
            "spec": {"endpoint": "http://big.example:8000/v1", "serverType": "generic"}})
        await raw.send("PATCH", _path(BIG_NS, "big") + "/status",
                       {"status": big_status(1_400_000)}, "application/merge-patch+json")
        async with raw.s.get(_path(BIG_NS, "big")) as r:
            size = len(await r.read())
    return rv0, size


# -- the candidates: each gives (list, watch-n-events-from-rv, watch-one-big-object, watch-gone)
Bench = dict[str, Callable[..., Awaitable[Any]]]


async def ours(kubeconfig: Path) -> tuple[Bench, Callable[[], Awaitable[None]]]:
    from chatprovider.kube import KubeClient, KubeConfig

    client = KubeClient(KubeConfig.load(str(kubeconfig)))

    async def lst() -> int:
        return len((await client.get(_path(BURST_NS)))["items"])

    async def watch(ns: str, rv: str, n: int) -> int:
        got = 0
        async for ev in client.watch(_path(ns), resource_version=rv, timeout_seconds=30):
            if ev.type in ("ADDED", "MODIFIED"):
                got += 1
                if got == n:
                    break
        return got

    return {"list": lst, "watch": watch}, client.close


async def kubernetes_asyncio(kubeconfig: Path) -> tuple[Bench, Callable[[], Awaitable[None]]]:
    from kubernetes_asyncio import client, config
    from kubernetes_asyncio import watch as kwatch

    api_client = await config.new_client_from_config(config_file=str(kubeconfig))
    api = client.CustomObjectsApi(api_client)

    async def lst() -> int:
        got = await api.list_namespaced_custom_object(GROUP, VERSION, BURST_NS, PLURAL)
        return len(got["items"])

    async def watch(ns: str, rv: str, n: int) -> int:
        got = 0
        async with kwatch.Watch() as w:
            async for ev in w.stream(api.list_namespaced_custom_object, GROUP, VERSION, ns,
                                     PLURAL, resource_version=rv, timeout_seconds=30,
                                     allow_watch_bookmarks=True):
                if ev["type"] in ("ADDED", "MODIFIED"):
                    got += 1
                    if got == n:
                        break
        return got

    return {"list": lst, "watch": watch}, api_client.close


async def lightkube(kubeconfig: Path) -> tuple[Bench, Callable[[], Awaitable[None]]]:
    from lightkube import AsyncClient, KubeConfig
    from lightkube.generic_resource import create_namespaced_resource

    cp = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
    client = AsyncClient(config=KubeConfig.from_file(str(kubeconfig)))

    async def lst() -> int:
        return len([o async for o in client.list(cp, namespace=BURST_NS)])

    async def watch(ns: str, rv: str, n: int) -> int:
        got = 0
        async for typ, _obj in client.watch(cp, namespace=ns, resource_version=rv):
            if typ in ("ADDED", "MODIFIED"):
                got += 1
                if got == n:
                    break
        return got

    return {"list": lst, "watch": watch}, client.close


async def kr8s(kubeconfig: Path) -> tuple[Bench, Callable[[], Awaitable[None]]]:
    import kr8s.asyncio as k

    api = await k.api(kubeconfig=str(kubeconfig))

    async def lst() -> int:
        return len([o async for o in api.get(PLURAL, namespace=BURST_NS)])

    async def watch(ns: str, rv: str, n: int) -> int:
        got = 0
        async for typ, _obj in api.watch(PLURAL, namespace=ns, since=rv):
            if typ in ("ADDED", "MODIFIED"):
                got += 1
                if got == n:
                    break
        return got

    async def close() -> None:
        return None

    return {"list": lst, "watch": watch}, close


async def outcome(coro: Awaitable[Any], seconds: float) -> str:
    try:
        async with asyncio.timeout(seconds):
            return f"ok: {await coro}"
    except TimeoutError:
        return f"no event within {seconds:.0f} s (hangs or loops)"
    except Exception as exc:  # noqa: BLE001 - the point is to record what each client raises
        return f"{type(exc).__name__}: {str(exc)[:120]}"


async def measure(plane: ControlPlane, rv0: str, rounds: int = 7
                  ) -> dict[str, dict[str, str]]:
    """Rounds interleave the clients (each round: every client lists, then every client
    replays the burst), so that a busy moment of the machine costs all of them alike."""
    results: dict[str, dict[str, str]] = {}
    clients: dict[str, tuple[Bench, Callable[[], Awaitable[None]]]] = {}
    for name, make in (("ours", ours), ("kubernetes_asyncio", kubernetes_asyncio),
                       ("lightkube", lightkube), ("kr8s", kr8s)):
        try:
            clients[name] = await make(plane.kubeconfig)
            await clients[name][0]["list"]()  # warm up: connection, TLS, discovery
        except ImportError as exc:
            results[name] = {"error": f"not installed ({exc})"}
    times: dict[str, dict[str, list[float]]] = {n: {"list": [], "burst": []} for n in clients}
    for _ in range(rounds):
        for name, (bench, _close) in clients.items():
            began = time.perf_counter()
            assert await bench["list"]() == COUNT
            times[name]["list"].append(time.perf_counter() - began)
        for name, (bench, _close) in clients.items():
            began = time.perf_counter()
            assert await bench["watch"](BURST_NS, rv0, COUNT) == COUNT
            times[name]["burst"].append(time.perf_counter() - began)
    for name, (bench, close) in clients.items():
        ms = {k: statistics.median(v) * 1000 for k, v in times[name].items()}
        row = {f"list {COUNT} (median of {rounds})": f"{ms['list']:.0f} ms",
               f"watch burst {COUNT} (median of {rounds})": f"{ms['burst']:.0f} ms"}
        try:
            row["watch 1.4 MiB object"] = await outcome(bench["watch"](BIG_NS, "0", 1), 30)
            row["watch resourceVersion=1 (410)"] = await outcome(
                bench["watch"](BURST_NS, "1", 1), 15)
        finally:
            await close()
        results[name] = row
        print(name, json.dumps(row, ensure_ascii=False), file=sys.stderr)
    return results


def main() -> None:
    with ControlPlane() as plane:
        subprocess.run([str(plane.binaries.kubectl), f"--kubeconfig={plane.kubeconfig}",
                        "apply", "--server-side", "-f", str(ROOT / "crds")], check=True,
                       capture_output=True)
        subprocess.run([str(plane.binaries.kubectl), f"--kubeconfig={plane.kubeconfig}",
                        "wait", "--for=condition=Established", "--timeout=60s",
                        "-f", str(ROOT / "crds")], check=True, capture_output=True)
        rv0, size = asyncio.run(stage(plane))
        print(f"big object as served: {size / 2**20:.2f} MiB", file=sys.stderr)
        results = asyncio.run(measure(plane, rv0))
    print(json.dumps({"big_object_bytes": size, "results": results}, indent=2,
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
