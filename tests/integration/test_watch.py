"""The watch of ChatProviders and ChatQuotas (kopf, against the real API server) after a watch
gap: kopf lists again after ``410 Gone`` without announcing what was deleted meanwhile, and the
watch's sweep forgets it, so that the relay stops routing to a deleted provider and the
operator stops sending its key to its endpoint.

The gap is staged by a loopback proxy in front of the API server
(:class:`chatprovider_tools.watchgap.WatchGapProxy`): it ends kopf's watch, holds the
reconnection while the test deletes objects, then answers it with the 410 ERROR event a real
API server sends for a resourceVersion it no longer keeps."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
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
from chatprovider_tools.controlplane import ControlPlane
from chatprovider_tools.watchgap import WatchGapProxy


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


def test_a_deletion_during_a_watch_gap_is_not_kept(control_plane: ControlPlane, kubeconfig,
                                                    chatprovider_crd, namespace: str,
                                                    tmp_path: Path, caplog) -> None:
    registry, quotas = Registry(), QuotaIndex()

    def observe_quota(event_type: str, body: Mapping[str, Any]) -> None:
        quotas.observe(event_type, body)

    async def main() -> None:
        ctx = ssl.create_default_context(cafile=str(control_plane.creds.ca_cert))
        async with WatchGapProxy(control_plane.server, ctx) as proxy, \
                KubeClient(KubeConfig.load(str(kubeconfig))) as direct:
            for name in ("stays", "goes"):
                await direct.create(_path(namespace, PLURAL), _provider(name))
            for name in ("kept", "dropped"):
                await direct.create(_path(namespace, QUOTA_PLURAL), _quota(name))
            config = KubeConfig.load(str(_proxied_kubeconfig(
                control_plane, proxy.url, tmp_path / "proxied")))
            settings = OperatorSettings(namespaces=(namespace,))
            async with KubeClient(config) as kube:
                objects = ReferencedObjects(kube)
                feed = Feed(registry, objects)

                def observe(event_type: str, body: Mapping[str, Any]) -> None:
                    feed.observe(event_type, body)

                watch = ProviderWatch(settings, config, kube, objects, observe,
                                      liveness=lambda: len(registry),
                                      others={QUOTA_PLURAL: observe_quota})
                stop = asyncio.Event()
                task = asyncio.create_task(watch.run(stop))
                try:
                    await eventually(
                        lambda: _true(watch.sweeps >= 1 and len(registry) == 2
                                      and len(quotas.in_namespace(namespace)) == 2),
                        "the watch lists both providers and quotas, and sweeps once")
                    async with proxy.gap(PLURAL), proxy.gap(QUOTA_PLURAL):
                        seen = {p: proxy.watches.get(p, 0) for p in (PLURAL, QUOTA_PLURAL)}
                        await eventually(
                            lambda: _true(all(proxy.watches.get(p, 0) > n
                                              for p, n in seen.items())),
                            "kopf watches again, and is held")
                        await direct.request("DELETE", f"{_path(namespace, PLURAL)}/goes")
                        await direct.request("DELETE",
                                             f"{_path(namespace, QUOTA_PLURAL)}/dropped")
                    await eventually(
                        lambda: _true(registry.get(ProviderRef(namespace, "goes")) is None
                                      and len(quotas.in_namespace(namespace)) == 1),
                        "the deleted provider and quota are forgotten")
                    assert proxy.gone_sent.get(PLURAL, 0) >= 1
                    assert proxy.gone_sent.get(QUOTA_PLURAL, 0) >= 1
                    assert registry.get(ProviderRef(namespace, "stays")) is not None
                    assert [q.name for q in quotas.in_namespace(namespace)] == ["kept"]
                    assert set(watch.inventory.known(PLURAL)) == {ProviderRef(namespace,
                                                                              "stays")}
                finally:
                    stop.set()
                    async with asyncio.timeout(20):
                        await task
                await objects.close()

    with caplog.at_level(logging.INFO, logger="chatprovider.inventory"):
        run(main())
    # kopf itself said nothing of the deletions: the sweep did.
    forgotten = [r.getMessage() for r in caplog.records if "was deleted while" in r.getMessage()]
    assert sorted(forgotten) == [
        f"chatproviders {namespace}/goes was deleted while the watch was reconnecting: "
        "forgetting it",
        f"chatquotas {namespace}/dropped was deleted while the watch was reconnecting: "
        "forgetting it"]


async def _true(value: bool) -> bool:
    return value
