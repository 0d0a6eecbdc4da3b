"""The client's watch against the real API server: an object near the API server's size limit,
and a resourceVersion that is too old."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from tests.integration.kube.conftest import eventually, provider, providers_path, run

from chatprovider.kube import ApiError, KubeClient, KubeConfig
from chatprovider.settings import OperatorSettings
from chatprovider.watch import build_kopf_registry, run_kopf

#: etcd refuses a value over 1.5 MiB (--max-request-bytes); stay just under it.
NEAR_LIMIT = 1_400_000


def big_status(target_bytes: int) -> dict:
    """A valid status of about ``target_bytes``: condition messages of 3-byte UTF-8 characters
    (the schema's maxLength, 32,768, counts characters, so each message is ~96 KiB)."""
    conditions, size = [], 0
    while size < target_bytes:
        chars = min(32768, (target_bytes - size) // 3 + 1)
        conditions.append({"type": f"Large{len(conditions)}", "status": "True",
                           "reason": "Measured", "message": "猫" * chars,
                           "lastTransitionTime": "2026-01-01T00:00:00Z"})
        size += chars * 3
    assert len(conditions) <= 16  # the schema's maxItems
    return {"conditions": conditions}


def test_a_watch_delivers_an_object_near_the_size_limit_and_keeps_going(
        kubeconfig, chatprovider_crd, namespace: str) -> None:
    path = providers_path(namespace)

    async def main() -> None:
        async with KubeClient(KubeConfig.load(str(kubeconfig))) as kube:
            start = (await kube.get(path))["metadata"]["resourceVersion"]
            await kube.create(path, provider("big"))
            stored = await kube.merge_patch(f"{path}/big/status",
                                            {"status": big_status(NEAR_LIMIT)})
            assert len(json.dumps(stored, ensure_ascii=False).encode()) > NEAR_LIMIT
            await kube.create(path, provider("small-after"))
            got: dict[str, dict] = {}
            events = kube.watch(path, resource_version=start, timeout_seconds=30)
            async with asyncio.timeout(60), contextlib.aclosing(events):
                async for event in events:
                    got[event.object["metadata"]["name"]] = event.object
                    if "small-after" in got:
                        break
            messages = [c["message"] for c in got["big"]["status"]["conditions"]]
            assert messages == [c["message"] for c in big_status(NEAR_LIMIT)["conditions"]]

    run(main())


def test_kopf_delivers_an_object_near_the_size_limit(kubeconfig, chatprovider_crd,
                                                     namespace: str) -> None:
    """The operator's and the relay's watch of ChatProviders is kopf's (its own reader)."""
    path = providers_path(namespace)
    config = KubeConfig.load(str(kubeconfig))
    settings = OperatorSettings(namespaces=(namespace,))
    sizes: dict[str, int] = {}
    registry = build_kopf_registry(
        lambda _t, body: sizes.__setitem__(
            body["metadata"]["name"],
            sum(len(c.get("message", "")) for c in (body.get("status") or {}).get(
                "conditions", []))),
        config=config, liveness=lambda: 0, settings=settings)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_kopf(registry, settings, stop))
        try:
            async with KubeClient(config) as kube:
                await kube.create(path, provider("big"))
                await kube.merge_patch(f"{path}/big/status", {"status": big_status(NEAR_LIMIT)})
                await kube.create(path, provider("small-after"))

                async def both() -> bool:
                    return sizes.get("big", 0) > NEAR_LIMIT // 3 and "small-after" in sizes

                await eventually(both, "kopf delivers the big provider and the next one")
        finally:
            stop.set()
            async with asyncio.timeout(30):
                await task

    run(main())


def test_a_too_old_resource_version_is_gone(kubeconfig, chatprovider_crd, namespace: str
                                            ) -> None:
    path = providers_path(namespace)

    async def main() -> None:
        async with KubeClient(KubeConfig.load(str(kubeconfig))) as kube:
            for i in range(3):
                await kube.create(path, provider(f"p{i}"))
            with pytest.raises(ApiError) as info:
                async with asyncio.timeout(30):
                    async for _ in kube.watch(path, resource_version="1", timeout_seconds=10):
                        pass
            assert info.value.gone

    run(main())
