"""Compacted models (what the registry keeps per provider) read exactly as validated ones."""

from __future__ import annotations

from typing import Any

from chatprovider.api.compaction import compact
from chatprovider.api.v1alpha1 import ChatProviderSpec, ChatProviderStatus

SPEC: dict[str, Any] = {"endpoint": "http://vllm.ml:8000/v1", "serverType": "vllm",
                        "apiKeySecretRef": {"name": "vllm-key"},
                        "discovery": {"interval": "2m"}}
STATUS: dict[str, Any] = {
    "observedGeneration": 3,
    "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "ok",
                    "lastTransitionTime": "2026-12-07T06:00:00Z", "observedGeneration": 3}],
    "models": [{"id": "llama"}, {"id": "qwen"}],
}


def test_a_compacted_model_dumps_compares_and_copies_like_the_validated_one() -> None:
    for cls, raw in ((ChatProviderSpec, SPEC), (ChatProviderStatus, STATUS)):
        plain, compacted = cls.model_validate(raw), compact(cls.model_validate(raw))
        assert compacted == plain
        for options in ({}, {"by_alias": True, "exclude_unset": True},
                        {"mode": "json", "by_alias": True, "exclude_none": True}):
            assert compacted.model_dump(**options) == plain.model_dump(**options)
        assert compacted.model_fields_set == plain.model_fields_set
        assert compacted.model_copy(deep=True) == plain
