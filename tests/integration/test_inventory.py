"""The inventory's sweep against the real API server: what it forgets, and what it must not
forget (an object the list does not show but a GET finds: created after the list was taken)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.integration.kube.conftest import run

from chatprovider.api.v1alpha1 import GROUP, PLURAL, VERSION
from chatprovider.inventory import Inventory
from chatprovider.kube import KubeClient
from chatprovider.kube.config import KubeConfig


def _path(namespace: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"


def _provider(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ChatProvider",
            "metadata": {"name": name},
            "spec": {"endpoint": f"http://{name}.example:8000/v1", "serverType": "generic"}}


def test_the_sweep_forgets_only_what_is_gone(kubeconfig, chatprovider_crd, namespace: str
                                             ) -> None:
    events: list[tuple[str, str, str]] = []

    def observe(event_type: str, body: Mapping[str, Any]) -> None:
        events.append((event_type, body["metadata"]["name"], body["metadata"]["uid"]))

    async def main() -> None:
        other = f"{namespace}-other"
        async with KubeClient(KubeConfig.load(str(kubeconfig))) as kube:
            await kube.create("/api/v1/namespaces", {"metadata": {"name": other}})
            here = await kube.create(_path(namespace), _provider("here"))
            replaced = await kube.create(_path(namespace), _provider("replaced"))
            unknown = await kube.create(_path(namespace), _provider("unknown"))  # never said
            # Outside the inventory's scope, so absent from its list, as an object created
            # after the list was taken would be; a GET finds it.
            unlisted = await kube.create(_path(other), _provider("unlisted"))
            try:
                # settle=-5: even an object created this second counts as one the watch
                # would have delivered by now
                inventory = Inventory(kube, {PLURAL: observe}, namespaces=(namespace,),
                                      settle=-5)
                inventory.deliver(PLURAL, "ADDED", here)
                inventory.deliver(PLURAL, "ADDED", unlisted)
                # Known under an older uid: that object is gone, a new one has its name.
                inventory.deliver(PLURAL, "ADDED", {"metadata": {
                    **replaced["metadata"], "uid": "00000000-0000-0000-0000-000000000000"}})
                inventory.deliver(PLURAL, "ADDED", {"metadata": {
                    "namespace": namespace, "name": "never-was", "uid": "u-1"}})
                events.clear()

                forgotten = await inventory.sweep(PLURAL)

                new_uid = replaced["metadata"]["uid"]
                assert forgotten == [(namespace, "never-was")]
                assert sorted(events) == [("ADDED", "unknown", unknown["metadata"]["uid"]),
                                          ("DELETED", "never-was", "u-1"),
                                          ("MODIFIED", "replaced", new_uid)]
                assert dict(inventory.known(PLURAL)) == {
                    (namespace, "here"): here["metadata"]["uid"],
                    (namespace, "replaced"): new_uid,
                    (namespace, "unknown"): unknown["metadata"]["uid"],
                    (other, "unlisted"): unlisted["metadata"]["uid"]}
                events.clear()
                assert await inventory.sweep(PLURAL) == []  # nothing more to forget
                assert events == []
                # With the default settle (60 s), objects this young are left to the watch.
                fresh = Inventory(kube, {PLURAL: observe}, namespaces=(namespace,))
                assert await fresh.sweep(PLURAL) == []
                assert events == [] and dict(fresh.known(PLURAL)) == {}
            finally:  # envtest reaps no namespace: its object goes by itself
                await kube.request("DELETE", f"{_path(other)}/unlisted")

    run(main())


def test_a_metadata_list_carries_no_spec(kubeconfig, chatprovider_crd, namespace: str) -> None:
    async def main() -> None:
        async with KubeClient(KubeConfig.load(str(kubeconfig))) as kube:
            await kube.create(_path(namespace), _provider("p"))
            listing = await kube.list_metadata(_path(namespace))
        assert listing["kind"] == "PartialObjectMetadataList"
        [item] = listing["items"]
        assert item["metadata"]["name"] == "p" and item["metadata"]["uid"]
        assert "spec" not in item and "status" not in item

    run(main())
