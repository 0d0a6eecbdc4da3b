"""What the inventory passes on and remembers, event by event (no request is made)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from chatprovider.inventory import Inventory
from chatprovider.kube.client import KubeClient
from chatprovider.kube.config import KubeConfig


def _body(name: str, uid: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ml", "name": name, "uid": uid}}


def test_a_late_deletion_of_a_replaced_object_does_not_drop_the_new_one() -> None:
    seen: list[tuple[str, str]] = []

    def observe(event_type: str, body: Mapping[str, Any]) -> None:
        seen.append((event_type, body["metadata"]["uid"]))

    async def main() -> dict[tuple[str, str], str]:
        async with KubeClient(KubeConfig(server="https://127.0.0.1:9")) as kube:
            inventory = Inventory(kube, {"chatproviders": observe})
            inventory.deliver("chatproviders", "ADDED", _body("vllm", "old"))
            # vllm deleted and created again: kopf handles each uid on its own, and the new
            # object's ADDED came before the old one's DELETED
            inventory.deliver("chatproviders", "ADDED", _body("vllm", "new"))
            inventory.deliver("chatproviders", "DELETED", _body("vllm", "old"))
            inventory.deliver("chatproviders", "ADDED", _body("ollama", "o"))
            inventory.deliver("chatproviders", "DELETED", _body("ollama", "o"))
            return dict(inventory.known("chatproviders"))

    known = asyncio.run(main())
    assert known == {("ml", "vllm"): "new"}
    assert seen == [("ADDED", "old"), ("ADDED", "new"), ("ADDED", "o"), ("DELETED", "o")]
