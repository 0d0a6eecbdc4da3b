"""Fixtures for the Kubernetes client against the real API server: a ServiceAccount that may
read ChatProviders and ConfigMaps in the test's namespace, and kubeconfigs that authenticate as
it through an exec plugin (tests/integration/kube/token_plugin.py) or a token file."""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
import yaml
from kubernetes import client as k8s_client

from chatprovider_tools.controlplane import ControlPlane

PLUGIN = Path(__file__).with_name("token_plugin.py")
GROUP, VERSION, PLURAL = "ai.chatprovider.dev", "v1alpha1", "chatproviders"
T = TypeVar("T")


def providers_path(namespace: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"


def provider(name: str) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ChatProvider",
            "metadata": {"name": name},
            "spec": {"endpoint": f"http://{name}.example:8000/v1", "serverType": "generic"}}


async def eventually(check: Callable[[], Awaitable[T | None]], what: str,
                     timeout: float = 60.0, every: float = 0.2) -> T:
    """Poll ``check`` until it returns something other than None or False (bounded)."""
    try:
        async with asyncio.timeout(timeout):
            while not (result := await check()):
                await asyncio.sleep(every)
            return result
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout:.0f} s") from None


def run(main: Awaitable[T]) -> T:
    """``asyncio.run(main)``, then a quarter of a second more of the loop: closed TLS
    transports (ours, kopf's) finish closing on the next loop iterations, and a loop closed
    before that leaves them to the garbage collector (an "unclosed transport" warning, an error
    here). aiohttp's documented graceful shutdown; the operator does the same."""

    async def settled() -> T:
        try:
            return await main
        finally:
            await asyncio.sleep(0.25)

    return asyncio.run(settled())


async def status_for(plane: ControlPlane, token: str, path: str) -> int:
    """The HTTP status the API server answers ``token`` with (a raw request, no client)."""
    ctx = ssl.create_default_context(cafile=str(plane.creds.ca_cert))
    async with aiohttp.ClientSession() as s, s.get(
            plane.server + path, ssl=ctx, headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status


@dataclass
class Reader:
    """A ServiceAccount allowed to get, list and watch ChatProviders and ConfigMaps."""

    namespace: str
    name: str
    uid: str


@pytest.fixture()
def reader(k8s: k8s_client.ApiClient, namespace: str) -> Reader:
    core, rbac = k8s_client.CoreV1Api(k8s), k8s_client.RbacAuthorizationV1Api(k8s)
    sa = core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "reader"},
        "rules": [{"apiGroups": [GROUP], "resources": [PLURAL],
                   "verbs": ["get", "list", "watch"]},
                  {"apiGroups": [""], "resources": ["configmaps"],
                   "verbs": ["get", "list", "watch"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})
    # kopf discovers resources and namespaces cluster-wide, as the chart's ClusterRole allows.
    cluster_name = f"reader-{namespace}"
    rbac.create_cluster_role({"metadata": {"name": cluster_name}, "rules": [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}]})
    rbac.create_cluster_role_binding({
        "metadata": {"name": cluster_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": cluster_name},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})
    return Reader(namespace, "reader", sa.metadata.uid)


ExecKubeconfig = Callable[..., Path]


@pytest.fixture()
def exec_kubeconfig(control_plane: ControlPlane, reader: Reader, tmp_path: Path
                    ) -> ExecKubeconfig:
    """``make(ttl=2.0)``: a kubeconfig whose exec plugin hands out tokens for ``reader`` that
    the API server accepts for ``ttl`` seconds; the plugin logs each run to ``tmp_path/runs``."""

    def make(ttl: float = 2.0, api_version: str = "client.authentication.k8s.io/v1") -> Path:
        path = tmp_path / f"exec-kubeconfig-{ttl}"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "exec",
            "clusters": [{"name": "plane", "cluster": {
                "server": control_plane.server,
                "certificate-authority": str(control_plane.creds.ca_cert)}}],
            "users": [{"name": "reader", "user": {"exec": {
                "apiVersion": api_version, "command": sys.executable,
                "args": [str(PLUGIN), "--key", str(control_plane.creds.sa_private_key),
                         "--issuer", control_plane.server, "--namespace", reader.namespace,
                         "--name", reader.name, "--uid", reader.uid, "--ttl", str(ttl),
                         "--log", str(tmp_path / "runs")],
                "interactiveMode": "Never"}}}],
            "contexts": [{"name": "exec", "context": {"cluster": "plane", "user": "reader",
                                                      "namespace": reader.namespace}}],
        }))
        return path

    return make


def plugin_runs(tmp_path: Path) -> int:
    runs = tmp_path / "runs"
    return len(runs.read_text().splitlines()) if runs.exists() else 0
