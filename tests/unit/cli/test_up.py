"""The demo provider that ``chatprovider up`` applies is a valid ChatProvider."""

from __future__ import annotations

import json

from chatprovider.api.v1alpha1 import ChatProvider
from chatprovider_tools.demo import NAMESPACE, _manifest


def _docs(text: str) -> list[dict]:
    return [json.loads(part) for part in text.split("\n---\n")]


def test_the_demo_manifest_without_a_key() -> None:
    docs = _docs(_manifest("http://127.0.0.1:11434", None, "ollama"))
    assert [d["kind"] for d in docs] == ["Namespace", "ChatProvider"]
    provider = ChatProvider.model_validate(docs[-1])
    assert provider.spec.api_key_secret_ref is None
    assert provider.metadata == {"name": "demo", "namespace": NAMESPACE}
    assert provider.spec.server_type == "ollama"


def test_the_demo_manifest_with_a_key_references_a_secret() -> None:
    docs = _docs(_manifest("http://127.0.0.1:8000", "k-123", "vllm"))
    assert [d["kind"] for d in docs] == ["Namespace", "Secret", "ChatProvider"]
    secret, provider = docs[1], ChatProvider.model_validate(docs[2])
    assert provider.spec.api_key_secret_ref is not None
    assert provider.spec.api_key_secret_ref.name == secret["metadata"]["name"]
    assert secret["stringData"][provider.spec.api_key_secret_ref.key] == "k-123"
    assert "k-123" not in json.dumps(docs[2])
