"""Compacted models (what the registry keeps per provider) read exactly as validated ones."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from chatprovider.api.compaction import compact
from chatprovider.api.v1alpha1 import ChatProviderSpec, ChatProviderStatus
from chatprovider.registry import view_from_body

SPEC: dict[str, Any] = {"endpoint": "http://vllm.ml:8000/v1", "serverType": "vllm",
                        "apiKeySecretRef": {"name": "vllm-key"},
                        "discovery": {"interval": "2m"}}
STATUS: dict[str, Any] = {
    "observedGeneration": 3,
    "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "ok",
                    "lastTransitionTime": "2026-12-07T06:00:00Z", "observedGeneration": 3}],
    "models": [{"id": "llama"}, {"id": "qwen"}],
}


def body(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ml", "uid": f"uid-{name}",
                         "generation": 3, "labels": {"pool": "gpu"}},
            "spec": SPEC, "status": STATUS}


def test_a_compacted_model_dumps_compares_and_copies_like_the_validated_one() -> None:
    for cls, raw in ((ChatProviderSpec, SPEC), (ChatProviderStatus, STATUS)):
        plain, compacted = cls.model_validate(raw), compact(cls.model_validate(raw))
        assert compacted == plain
        for options in ({}, {"by_alias": True, "exclude_unset": True},
                        {"mode": "json", "by_alias": True, "exclude_none": True}):
            assert compacted.model_dump(**options) == plain.model_dump(**options)
        assert compacted.model_fields_set == plain.model_fields_set
        assert compacted.model_copy(deep=True) == plain


def test_views_of_different_providers_share_the_sets_of_given_fields() -> None:
    one, two = view_from_body(body("a")), view_from_body(body("b"))
    assert one.spec.model_fields_set is two.spec.model_fields_set
    assert one.spec.discovery.model_fields_set is two.spec.discovery.model_fields_set
    assert one.status.conditions[0].model_fields_set is \
        two.status.conditions[0].model_fields_set
    assert one.status.models[0].model_fields_set is two.status.models[1].model_fields_set
    # what each was given is still told apart: a spec without discovery has other fields set
    other = view_from_body({**body("c"), "spec": {"endpoint": "http://ollama:11434/v1"}})
    assert other.spec.model_fields_set == {"endpoint"}
    assert one.spec.model_fields_set == {"endpoint", "server_type", "api_key_secret_ref",
                                         "discovery"}


def test_the_models_of_a_view_are_read_only_and_their_shared_sets_cannot_change() -> None:
    view = view_from_body(body("a"))
    with pytest.raises(ValidationError, match="frozen"):
        view.spec.endpoint = "http://elsewhere:8000/v1"  # type: ignore[misc]
    assert view.spec.endpoint == SPEC["endpoint"]
    with pytest.raises(AttributeError, match="read-only"):
        view.spec.model_copy(update={"server_type": "ollama"})
    assert view_from_body(body("b")).spec.model_fields_set == view.spec.model_fields_set
