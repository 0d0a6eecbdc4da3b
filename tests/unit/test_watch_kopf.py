"""How the watch configures kopf: only ``on.event`` handlers, so kopf keeps no diff base."""

from __future__ import annotations

import kopf

from chatprovider.watch import NoDiffBase, configure_kopf


def test_kopf_keeps_no_diff_base_of_the_watched_objects() -> None:
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, NoDiffBase)
    body = kopf.Body({"apiVersion": "ai.chatprovider.dev/v1alpha1", "kind": "ChatProvider",
                      "metadata": {"name": "vllm", "namespace": "ml", "annotations": {"a": "b"}},
                      "spec": {"endpoint": "http://vllm:8000/v1"}, "status": {"models": []}})
    assert storage.build(body=body) == {}  # no copy of the object at each event
    assert storage.fetch(body=body) is None
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    assert not patch  # nothing is written onto the object either
