"""The registry's views of ChatProviders: what they keep of each object, and at what cost."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from pydantic import ValidationError
from tests.unit.api.helpers import SPEC, STATUS

from chatprovider.registry import view_from_body


def body(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ml", "uid": f"uid-{name}",
                         "generation": 3, "labels": {"pool": "gpu"}},
            "spec": SPEC, "status": STATUS}


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
    view, other = view_from_body(body("a")), view_from_body(body("b"))
    with pytest.raises(ValidationError, match="frozen"):
        view.spec.endpoint = "http://elsewhere:8000/v1"  # type: ignore[misc]
    assert view.spec.endpoint == SPEC["endpoint"]
    given = view.spec.model_fields_set
    changes = [lambda: given.add("proxy"), lambda: given.discard("endpoint"), given.clear,
               given.pop, lambda: given.update({"proxy"}), lambda: given.remove("endpoint"),
               lambda: given.difference_update({"endpoint"})]
    for change in changes:
        with pytest.raises(AttributeError, match="read-only"):
            change()
    with pytest.raises(AttributeError, match="read-only"):
        given -= {"endpoint"}
    assert other.spec.model_fields_set == {"endpoint", "server_type", "api_key_secret_ref",
                                           "discovery"}
    # a copy gets a set of its own: what it is given does not leak into the shared one
    edited = view.spec.model_copy(update={"server_type": "ollama"})
    assert edited.server_type == "ollama" and view.spec.server_type == "vllm"
    assert pickle.loads(pickle.dumps(view.spec)) == view.spec
    assert other.spec.model_fields_set is view.spec.model_fields_set


def test_a_change_of_status_alone_keeps_the_validated_spec_and_a_new_generation_does_not() -> None:
    first = view_from_body(body("a"))
    checked = {**body("a"), "status": {**STATUS, "observedGeneration": 3, "models": []}}
    second = view_from_body(checked, first)
    assert second.spec is first.spec and second.status.models == []
    edited = body("a")
    edited["metadata"] = {**edited["metadata"], "generation": 4}
    edited["spec"] = {**SPEC, "endpoint": "http://vllm-2.ml:8000/v1"}
    assert view_from_body(edited, second).spec.endpoint == "http://vllm-2.ml:8000/v1"
    replaced = {**body("a"), "metadata": {**body("a")["metadata"], "uid": "uid-new"},
                "spec": {**SPEC, "serverType": "ollama"}}
    assert view_from_body(replaced, first).spec.server_type == "ollama"  # same name, new object


def test_a_body_without_a_uid_is_always_validated_again() -> None:
    anonymous = {**body("a"), "metadata": {"name": "a", "namespace": "ml", "generation": 3}}
    first = view_from_body(anonymous)
    changed = {**anonymous, "spec": {**SPEC, "serverType": "ollama"}}
    assert view_from_body(changed, first).spec.server_type == "ollama"
