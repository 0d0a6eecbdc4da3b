"""The Kubernetes side of the suite: namespaces, the key Secret, ChatProviders, waiting for
Ready (one watch, many objects), and the API server's own request counters."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from chatprovider.api.v1alpha1 import GROUP, PLURAL, VERSION
from chatprovider.kube.client import ApiError, KubeClient

__all__ = ["ReadyWatch", "Writes", "apiserver_writes", "caller_token", "create_namespace",
           "create_providers", "create_quota", "delete_quota", "provider", "put_secret", "quota",
           "resource_versions"]

KEY_SECRET = "bench-key"


def provider(namespace: str, name: str, endpoint: str, *,
             interval: str | None = None) -> dict[str, Any]:
    """A ChatProvider for a bench upstream (generic server, API key from ``bench-key``),
    re-checked every ``interval`` (a duration such as ``30s``; None: the default)."""
    spec: dict[str, Any] = {"endpoint": endpoint, "serverType": "generic",
                            "apiKeySecretRef": {"name": KEY_SECRET}}
    if interval is not None:
        spec["discovery"] = {"interval": interval}
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ChatProvider",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec,
    }


def quota(namespace: str, name: str, providers: Iterable[str]) -> dict[str, Any]:
    """A ChatQuota on ``providers`` for every caller (anonymous or authenticated), with limits
    far above what any case sends: every request is admitted, reserved and settled, and none
    is refused."""
    big = 10**12
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ChatQuota",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"providers": {"names": list(providers)},
                 "subjects": [{"kind": "Group", "name": "system:unauthenticated"},
                              {"kind": "Group", "name": "system:authenticated"}],
                 "scope": "Shared",
                 "limits": {"requestsPerMinute": big, "tokensPerMinute": big,
                            "tokensPerDay": big}},
    }


def _providers_path(namespace: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"


async def _create(kube: KubeClient, path: str, body: dict[str, Any]) -> None:
    """Create ``body`` unless it exists."""
    try:
        await kube.create(path, body)
    except ApiError as exc:
        if not exc.conflict:
            raise


async def create_namespace(kube: KubeClient, name: str) -> None:
    await _create(kube, "/api/v1/namespaces", {"metadata": {"name": name}})


async def put_secret(kube: KubeClient, namespace: str, key: str) -> None:
    """Create or change the key Secret (``apiKey`` = ``key``)."""
    path = f"/api/v1/namespaces/{namespace}/secrets"
    try:
        await kube.create(path, {"metadata": {"name": KEY_SECRET}, "stringData": {"apiKey": key}})
    except ApiError as exc:
        if not exc.conflict:
            raise
        await kube.merge_patch(f"{path}/{KEY_SECRET}", {"stringData": {"apiKey": key}})


async def resource_versions(kube: KubeClient, namespace: str) -> dict[str, str]:
    """name → resourceVersion of every ChatProvider of ``namespace`` (one list)."""
    listing = await kube.get(_providers_path(namespace))
    return {item["metadata"]["name"]: str(item["metadata"]["resourceVersion"])
            for item in listing.get("items") or []}


async def caller_token(kube: KubeClient, namespace: str, account: str, audience: str) -> str:
    """A bound token (one hour) of the ServiceAccount ``namespace/account``, which may ``use``
    every ChatProvider of ``namespace``: the caller of the relay's Kubernetes authentication."""
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    await _create(kube, f"/api/v1/namespaces/{namespace}/serviceaccounts",
                  {"metadata": {"name": account}})
    await _create(kube, f"{rbac}/roles", {
        "metadata": {"name": account},
        "rules": [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["use"]}]})
    await _create(kube, f"{rbac}/rolebindings", {
        "metadata": {"name": account},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]})
    review = await kube.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        {"spec": {"audiences": [audience], "expirationSeconds": 3600}})
    return str(review["status"]["token"])


def _quota_path(namespace: str, name: str = "") -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/chatquotas" + \
        (f"/{name}" if name else "")


async def create_quota(kube: KubeClient, body: dict[str, Any]) -> None:
    await kube.create(_quota_path(body["metadata"]["namespace"]), body)


async def delete_quota(kube: KubeClient, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    await kube.request("DELETE", _quota_path(meta["namespace"], meta["name"]))


async def create_providers(kube: KubeClient, bodies: Iterable[dict[str, Any]],
                           concurrency: int = 32) -> dict[str, float]:
    """Create them (``concurrency`` in flight); returns name → time the create was sent."""
    sent: dict[str, float] = {}
    slots = asyncio.Semaphore(concurrency)

    async def one(body: dict[str, Any]) -> None:
        async with slots:
            meta = body["metadata"]
            sent[meta["name"]] = time.monotonic()
            await kube.create(_providers_path(meta["namespace"]), body)

    await asyncio.gather(*(one(b) for b in bodies))
    return sent


def _is_ready(obj: dict[str, Any]) -> bool:
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    if status.get("observedGeneration") != meta.get("generation"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])


class ReadyWatch:
    """Watches the ChatProviders of a namespace and notes when each first turned Ready, and
    every change the watch delivers (each MODIFIED is a new resourceVersion: a stored write)."""

    def __init__(self, kube: KubeClient, namespace: str) -> None:
        self._kube, self._ns = kube, namespace
        self.ready_at: dict[str, float] = {}
        self.events: Counter[str] = Counter()
        """Watch events by type (ADDED, MODIFIED, DELETED; bookmarks are not counted)."""
        self.modified: Counter[str] = Counter()
        """MODIFIED events per provider."""
        self.modified_to_ready: dict[str, int] = {}
        """MODIFIED events of a provider up to (and with) the one that showed it Ready."""
        self.modified_at: list[float] = []
        """When each MODIFIED event arrived (``time.monotonic()``)."""
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listing = await self._kube.get(_providers_path(self._ns))
        for item in listing.get("items") or []:
            if _is_ready(item):
                self.ready_at.setdefault(item["metadata"]["name"], time.monotonic())
        version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
        self._task = asyncio.create_task(self._run(version))

    async def _run(self, version: str) -> None:
        while True:
            try:
                async for event in self._kube.watch(_providers_path(self._ns),
                                                    resource_version=version):
                    obj = event.object
                    version = str((obj.get("metadata") or {}).get("resourceVersion", version))
                    if event.type == "BOOKMARK":
                        continue
                    self.events[event.type] += 1
                    name = obj["metadata"]["name"]
                    if event.type == "MODIFIED":
                        self.modified[name] += 1
                        self.modified_at.append(time.monotonic())
                    if event.type in ("ADDED", "MODIFIED") and _is_ready(obj):
                        if name not in self.ready_at:
                            self.ready_at[name] = time.monotonic()
                            self.modified_to_ready[name] = self.modified[name]
                            self._changed.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - re-watch (from the last version seen)
                await asyncio.sleep(0.2)

    async def wait(self, names: Iterable[str], timeout: float) -> bool:
        """True once every name is Ready; False when ``timeout`` passes first."""
        wanted = set(names)
        deadline = time.monotonic() + timeout
        while not wanted <= self.ready_at.keys():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                async with asyncio.timeout(min(left, 1.0)):
                    await self._changed.wait()
            except TimeoutError:
                pass
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class Writes:
    """API server request counters that matter to the operator's write budget."""

    def __init__(self, status_patches: float, other_provider_writes: float,
                 events: float) -> None:
        self.status_patches = status_patches
        self.other_provider_writes = other_provider_writes
        self.events = events

    def __sub__(self, other: Writes) -> Writes:
        return Writes(self.status_patches - other.status_patches,
                      self.other_provider_writes - other.other_provider_writes,
                      self.events - other.events)


def _labels(line: str) -> dict[str, str]:
    inner = line[line.index("{") + 1:line.rindex("}")]
    out: dict[str, str] = {}
    for part in inner.split('",'):
        key, _, value = part.partition('="')
        out[key.strip()] = value.rstrip('"')
    return out


def apiserver_writes(kubectl: Path, kubeconfig: Path) -> Writes:
    """From ``apiserver_request_total`` (the API server's own count of every request)."""
    text = subprocess.run(  # noqa: S603 - our own kubectl
        [str(kubectl), f"--kubeconfig={kubeconfig}", "get", "--raw", "/metrics"],
        capture_output=True, text=True, check=True, timeout=60).stdout
    status = other = events = 0.0
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = _labels(line)
        value = float(line.rsplit(" ", 1)[1])
        verb = labels.get("verb", "")
        if verb not in ("POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE"):
            continue
        if labels.get("resource") == "chatproviders":
            if labels.get("subresource") == "status" and verb in ("PATCH", "PUT", "APPLY"):
                status += value
            elif labels.get("subresource", "") == "" and verb != "POST":
                other += value
        elif labels.get("resource") == "events" and verb in ("POST", "CREATE"):
            events += value
    return Writes(status, other, events)
