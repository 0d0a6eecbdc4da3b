"""Credentials that change under a running client, against the real API server: an exec plugin
whose tokens expire after seconds (and are then refused), and a token file that is rotated."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

from kubernetes import client as k8s_client
from tests.integration.kube.conftest import (
    ExecKubeconfig,
    eventually,
    plugin_runs,
    provider,
    providers_path,
    run,
    status_for,
)

from chatprovider.kube import KubeClient, KubeConfig
from chatprovider.kube.credentials import ExecPlugin, TokenFile
from chatprovider.settings import OperatorSettings
from chatprovider.watch import KopfLogin, build_kopf_registry, run_kopf

CONFIGMAPS = "/api/v1/namespaces/{}/configmaps"


def test_exec_plugin_tokens_are_renewed_past_their_expiry(
        control_plane, exec_kubeconfig: ExecKubeconfig, namespace: str, k8s, tmp_path: Path
) -> None:
    """The plugin's tokens are refused 2 s after they are minted; the client lists and watches
    well past the first token's end, because it runs the plugin again."""
    config = KubeConfig.load(str(exec_kubeconfig(ttl=2.0)))
    path = CONFIGMAPS.format(namespace)
    core = k8s_client.CoreV1Api(k8s)

    async def main() -> None:
        async with KubeClient(config) as kube:
            listed = await kube.get(path)
            first = await config.bearer_token()
            assert first is not None
            # Positive control: the first token stops working, so a client that kept it would
            # now fail. Meanwhile every list must succeed.
            async def first_refused() -> bool:
                await kube.get(path)
                return await status_for(control_plane, first, path) == 401

            await eventually(first_refused, "the first token is refused once it expired")
            assert (await kube.get(path))["kind"] == "ConfigMapList"
            assert await config.bearer_token() != first

            # A watch opened now (with a renewed token) sees a change made after it.
            events = kube.watch(path, resource_version=listed["metadata"]["resourceVersion"],
                                timeout_seconds=30)
            core.create_namespaced_config_map(namespace, {"metadata": {"name": "after"}})
            async with asyncio.timeout(30), contextlib.aclosing(events):
                async for event in events:
                    if event.object["metadata"]["name"] == "after":
                        break

    run(main())
    assert isinstance(config.credentials, ExecPlugin)
    assert config.credentials.runs == plugin_runs(tmp_path) >= 2


def test_concurrent_requests_run_a_due_plugin_once(exec_kubeconfig: ExecKubeconfig,
                                                   namespace: str, tmp_path: Path) -> None:
    config = KubeConfig.load(str(exec_kubeconfig(ttl=6.0)))
    plugin = config.credentials
    assert isinstance(plugin, ExecPlugin)
    path = CONFIGMAPS.format(namespace)

    async def main() -> tuple[int, int]:
        async with KubeClient(config) as kube:
            await asyncio.gather(*(kube.get(path) for _ in range(20)))
            after_first = plugin.runs
            first = await config.bearer_token()

            async def due() -> bool:  # refreshed a fifth of the lifetime early
                return plugin._due()

            await eventually(due, "the token becomes due for renewal", every=0.1)
            await asyncio.gather(*(kube.get(path) for _ in range(20)))
            assert await config.bearer_token() != first
            return after_first, plugin.runs

    after_first, after_second = run(main())
    assert (after_first, after_second) == (1, 2)
    assert plugin_runs(tmp_path) == 2


def test_a_401_runs_the_plugin_again_once(exec_kubeconfig: ExecKubeconfig, namespace: str
                                          ) -> None:
    """A token the API server refuses before its stated expiry (revoked, clock skew) is
    replaced by one run of the plugin, however many requests saw the 401."""
    config = KubeConfig.load(str(exec_kubeconfig(ttl=600.0)))
    plugin = config.credentials
    assert isinstance(plugin, ExecPlugin)
    path = CONFIGMAPS.format(namespace)

    async def main() -> None:
        async with KubeClient(config) as kube:
            await kube.get(path)
            assert plugin._current is not None
            plugin._current.token = "revoked"  # what the server now refuses
            await asyncio.gather(*(kube.get(path) for _ in range(10)))

    run(main())
    assert plugin.runs == 2


def test_kopf_login_hands_out_the_expiry_and_renews_on_a_second_call(
        exec_kubeconfig: ExecKubeconfig) -> None:
    config = KubeConfig.load(str(exec_kubeconfig(ttl=600.0)))
    login = KopfLogin(config)

    async def main() -> None:
        first = await login()
        assert first.token and first.expiration == config.credentials.expires_at
        assert first.expiration is not None
        second = await login()  # kopf logs in again only when the first was refused
        assert second.token and second.token != first.token

    run(main())


def test_kopf_keeps_watching_with_an_exec_plugin_past_expiry(
        control_plane, chatprovider_crd, exec_kubeconfig: ExecKubeconfig, namespace: str, k8s,
        tmp_path: Path) -> None:
    """kopf's watch of ChatProviders, logged in through the same plugin, re-watches every
    second: providers created after the first token was refused still arrive."""
    config = KubeConfig.load(str(exec_kubeconfig(ttl=2.0)))
    settings = OperatorSettings(namespaces=(namespace,), watch_server_timeout=1,
                                watch_client_timeout=5, watch_inactivity_timeout=5)
    seen: set[str] = set()
    registry = build_kopf_registry(lambda _t, body: seen.add(body["metadata"]["name"]),
                                   config=config, liveness=lambda: 0, settings=settings)
    custom = k8s_client.CustomObjectsApi(k8s)
    group, version, plural = "ai.chatprovider.dev", "v1alpha1", "chatproviders"

    async def main() -> None:
        stop = asyncio.Event()
        kopf_task = asyncio.create_task(run_kopf(registry, settings, stop))
        try:
            custom.create_namespaced_custom_object(group, version, namespace, plural,
                                                   provider("before"))

            async def seen_before() -> bool:
                return "before" in seen

            await eventually(seen_before, "kopf sees the first provider")
            first = await config.bearer_token()
            assert first is not None

            async def first_refused() -> bool:
                return await status_for(control_plane, first,
                                        providers_path(namespace)) == 401

            await eventually(first_refused, "the first token is refused once it expired")
            runs = plugin_runs(tmp_path)
            custom.create_namespaced_custom_object(group, version, namespace, plural,
                                                   provider("after"))

            async def seen_after() -> bool:
                return "after" in seen

            await eventually(seen_after, "kopf sees a provider created after the expiry")
            assert plugin_runs(tmp_path) >= runs >= 2
        finally:
            stop.set()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(30):
                    await kopf_task
            if not kopf_task.done():
                kopf_task.cancel()

    run(main())


def test_a_rotated_token_file_is_read_again(control_plane, mint_token, k8s, namespace: str,
                                            tmp_path: Path, monkeypatch) -> None:
    """In a pod, kubelet rewrites the projected ServiceAccount token: once the old one is
    refused, the client reads the file again and carries on."""
    core = k8s_client.CoreV1Api(k8s)
    rbac = k8s_client.RbacAuthorizationV1Api(k8s)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "pod"}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "pod"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "pod"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod"},
        "subjects": [{"kind": "ServiceAccount", "name": "pod", "namespace": namespace}]})

    def bound_token(secret: str) -> str:
        """A token bound to a Secret (as kubelet's are bound to the pod): it is refused once
        the Secret is deleted."""
        uid = core.create_namespaced_secret(namespace, {"metadata": {"name": secret}}
                                            ).metadata.uid
        return str(core.create_namespaced_service_account_token("pod", namespace, {"spec": {
            "expirationSeconds": 3600,
            "boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": secret,
                               "uid": uid}}}).status.token)

    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    shutil.copy(control_plane.creds.ca_cert, sa_dir / "ca.crt")
    (sa_dir / "namespace").write_text(namespace)
    old, new = bound_token("old-pod"), bound_token("new-pod")
    (sa_dir / "token").write_text(old)
    host, port = control_plane.server.removeprefix("https://").rsplit(":", 1)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    config = KubeConfig.load(service_account_dir=sa_dir)
    assert isinstance(config.credentials, TokenFile)
    path = CONFIGMAPS.format(namespace)

    async def main() -> None:
        async with KubeClient(config) as kube:
            await kube.get(path)
            assert await config.bearer_token() == old
            # kubelet rotates: a new token in the file, and the old one stops working.
            (sa_dir / "token.tmp").write_text(new + "\n")
            (sa_dir / "token.tmp").replace(sa_dir / "token")
            core.delete_namespaced_secret("old-pod", namespace)

            async def old_refused() -> bool:
                return await status_for(control_plane, old, path) == 401

            await eventually(old_refused, "the old token is refused")
            assert (await kube.get(path))["kind"] == "ConfigMapList"
            assert await config.bearer_token() == new

    run(main())
