"""The watch of ChatProviders and ChatQuotas (kopf, against the real API server) after a watch
gap: kopf lists again after ``410 Gone`` without announcing what was deleted meanwhile, and the
watch's sweep forgets it, so that the relay stops routing to a deleted provider and the
operator stops sending its key to its endpoint.

The gap is staged by a loopback proxy in front of the API server
(:class:`chatprovider_tools.apiproxy.ApiServerProxy`): it ends kopf's watch, holds the
reconnection while the test deletes objects, then answers it with the 410 ERROR event a real
API server sends for a resourceVersion it no longer keeps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from tests.integration.kube.conftest import eventually, run

from chatprovider.api.quota import QUOTA_PLURAL
from chatprovider.api.v1alpha1 import GROUP, PLURAL, VERSION
from chatprovider.domain.routing import ProviderRef
from chatprovider.feed import Feed
from chatprovider.kube import KubeClient
from chatprovider.kube.config import KubeConfig
from chatprovider.kube.objects import ReferencedObjects
from chatprovider.quotas import QuotaIndex
from chatprovider.registry import Registry
from chatprovider.settings import OperatorSettings
from chatprovider.watch import ProviderWatch
from chatprovider_tools.apiproxy import ApiServerProxy
from chatprovider_tools.controlplane import ControlPlane


def _path(namespace: str, plural: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"


def _provider(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ChatProvider",
            "metadata": {"name": name},
            "spec": {"endpoint": f"http://{name}.example:8000/v1", "serverType": "generic"}}


def _quota(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ChatQuota", "metadata": {"name": name},
            "spec": {"providers": {"selector": {"matchLabels": {"pool": "gpu"}}},
                     "subjects": [{"kind": "Group", "name": "system:serviceaccounts"}],
                     "limits": {"requestsPerMinute": 10}}}


def _proxied_kubeconfig(plane: ControlPlane, proxy_url: str, path: Path) -> Path:
    """The admin kubeconfig, with the proxy as its server (plain HTTP on loopback)."""
    config = yaml.safe_load(plane.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"] = {"server": proxy_url}
    path.write_text(yaml.safe_dump(config))
    return path


class Watched:
    """A :class:`ProviderWatch` through the proxy, feeding a registry and a quota index."""

    def __init__(self, config: KubeConfig, kube: KubeClient, settings: OperatorSettings,
                 proxy: ApiServerProxy, direct: KubeClient) -> None:
        self.proxy, self.direct = proxy, direct
        self.registry, self.quotas = Registry(), QuotaIndex()
        self.objects = ReferencedObjects(kube)
        feed = Feed(self.registry, self.objects)

        def observe(event_type: str, body: Mapping[str, Any]) -> None:
            feed.observe(event_type, body)

        self.watch = ProviderWatch(settings, config, kube, self.objects, observe,
                                   liveness=lambda: len(self.registry),
                                   others={QUOTA_PLURAL: self.quotas.observe})

    def counts(self, namespace: str) -> tuple[int, int]:
        return len(self.registry), len(self.quotas.in_namespace(namespace))


@contextlib.asynccontextmanager
async def _watching(plane: ControlPlane, kubeconfig: Path, namespace: str, tmp_path: Path, *,
                    providers: list[str], quotas: list[str], sweep_interval: float
                    ) -> AsyncIterator[Watched]:
    """``providers`` and ``quotas`` created, then watched through a :class:`ApiServerProxy`
    until the block ends (a bounded stop)."""
    ctx = ssl.create_default_context(cafile=str(plane.creds.ca_cert))
    async with ApiServerProxy(plane.server, ctx) as proxy, \
            KubeClient(KubeConfig.load(str(kubeconfig))) as direct:
        for name in providers:
            await direct.create(_path(namespace, PLURAL), _provider(name))
        for name in quotas:
            await direct.create(_path(namespace, QUOTA_PLURAL), _quota(name))
        config = KubeConfig.load(str(_proxied_kubeconfig(plane, proxy.url,
                                                         tmp_path / "proxied")))
        settings = OperatorSettings(namespaces=(namespace,), watch_sweep_interval=sweep_interval)
        async with KubeClient(config) as kube:
            w = Watched(config, kube, settings, proxy, direct)
            stop = asyncio.Event()
            task = asyncio.create_task(w.watch.run(stop))
            try:
                yield w
            finally:
                stop.set()
                try:
                    async with asyncio.timeout(20):
                        await task
                finally:
                    await w.objects.close()


async def _deleted_in_a_gap(proxy: ApiServerProxy, direct: KubeClient, namespace: str,
                            providers: list[str], quotas: list[str]) -> None:
    """End kopf's watches, delete while it is held back, then let it in with 410 Gone."""
    async with proxy.gap(PLURAL), proxy.gap(QUOTA_PLURAL):
        seen = {p: proxy.watches.get(p, 0) for p in (PLURAL, QUOTA_PLURAL)}
        await eventually(
            lambda: _true(all(proxy.watches.get(p, 0) > n for p, n in seen.items())),
            "kopf watches again, and is held")
        for name in providers:
            await direct.request("DELETE", f"{_path(namespace, PLURAL)}/{name}")
        for name in quotas:
            await direct.request("DELETE", f"{_path(namespace, QUOTA_PLURAL)}/{name}")


def _forgotten(caplog) -> list[str]:
    return sorted(r.getMessage() for r in caplog.records if "was deleted while" in r.getMessage())


def test_a_deletion_during_a_watch_gap_is_not_kept(control_plane: ControlPlane, kubeconfig,
                                                    chatprovider_crd, namespace: str,
                                                    tmp_path: Path, caplog) -> None:
    """kopf's list after the 410 still finds an object of each kind: the sweep after it."""

    async def main() -> None:
        # The periodic sweep is far off: what forgets is the sweep after kopf's list.
        async with _watching(control_plane, kubeconfig, namespace, tmp_path,
                             providers=["stays", "goes"], quotas=["kept", "dropped"],
                             sweep_interval=3600) as w:
            proxy = w.proxy
            await eventually(lambda: _true(
                w.counts(namespace) == (2, 2) and w.watch.sweeper.sweeps >= 1
                and all(proxy.metadata_lists.get(p) for p in (PLURAL, QUOTA_PLURAL))),
                "the watch lists both providers and quotas, and sweeps both kinds")
            swept = dict(proxy.metadata_lists)
            await _deleted_in_a_gap(proxy, w.direct, namespace, ["goes"], ["dropped"])
            await eventually(lambda: _true(w.counts(namespace) == (1, 1)),
                             "the deleted provider and quota are forgotten")
            # one sweep of each kind after kopf's list (not one per listed object)
            assert {p: n - swept[p] for p, n in proxy.metadata_lists.items()} == {
                PLURAL: 1, QUOTA_PLURAL: 1}
            assert proxy.gone_sent.get(PLURAL, 0) >= 1
            assert proxy.gone_sent.get(QUOTA_PLURAL, 0) >= 1
            assert w.registry.get(ProviderRef(namespace, "stays")) is not None
            assert [q.name for q in w.quotas.in_namespace(namespace)] == ["kept"]
            assert set(w.watch.inventory.known(PLURAL)) == {(namespace, "stays")}

    with caplog.at_level(logging.INFO, logger="chatprovider.inventory"):
        run(main())
    # kopf itself said nothing of the deletions: the sweep did.
    assert _forgotten(caplog) == [
        f"chatproviders {namespace}/goes was deleted while the watch was reconnecting: "
        "forgetting it",
        f"chatquotas {namespace}/dropped was deleted while the watch was reconnecting: "
        "forgetting it"]


def test_the_last_objects_deleted_during_a_gap_are_forgotten(
        control_plane: ControlPlane, kubeconfig, chatprovider_crd, namespace: str,
        tmp_path: Path, caplog) -> None:
    """kopf's list after the 410 finds nothing, so no event says it listed: the periodic sweep
    forgets them, and a sweep the API server refuses is retried (one warning)."""

    async def main() -> None:
        async with _watching(control_plane, kubeconfig, namespace, tmp_path,
                             providers=["only"], quotas=["only"], sweep_interval=1.0) as w:
            await eventually(lambda: _true(w.watch.sweeper.sweeps >= 1
                                           and w.counts(namespace) == (1, 1)),
                             "the watch lists the provider and the quota, and sweeps")
            w.proxy.refuse_sweeps(QUOTA_PLURAL, 2)
            await _deleted_in_a_gap(w.proxy, w.direct, namespace, ["only"], ["only"])
            await eventually(lambda: _true(w.counts(namespace) == (0, 0)),
                             "the last provider and quota are forgotten")
            assert w.proxy.refused.get(QUOTA_PLURAL) == 2

    with caplog.at_level(logging.INFO):
        run(main())
    assert _forgotten(caplog) == [
        f"chatproviders {namespace}/only was deleted while the watch was reconnecting: "
        "forgetting it",
        f"chatquotas {namespace}/only was deleted while the watch was reconnecting: "
        "forgetting it"]
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "chatprovider.inventory" and r.levelno == logging.WARNING]
    assert warnings == ["could not list the chatquotas to forget deleted ones (503 "
                        "ServiceUnavailable: staged by the test's proxy); retrying with back-off"]


async def _true(value: bool) -> bool:
    return value
