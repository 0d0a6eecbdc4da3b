"""The ChatProvider CRD on a real API server: what users see in kubectl, and what is refused."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from chatprovider.api.crd import CRD_NAME
from chatprovider.api.v1alpha1 import ChatProvider, ChatProviderSpec, ChatProviderStatus

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
INVALID = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))
EXPECT = "# expect: "

pytestmark = pytest.mark.usefixtures("chatprovider_crd")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _provider(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ai.chatprovider.dev/v1alpha1",
        "kind": "ChatProvider",
        "metadata": {"name": name},
        "spec": {"endpoint": "http://vllm:8000/v1", **spec},
    }


def _create(kubectl, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    return _get(kubectl, namespace, manifest["metadata"]["name"])


def _get(kubectl, namespace: str, name: str) -> dict[str, Any]:
    out = kubectl("get", "chatprovider", name, "-n", namespace, "-o", "json").stdout
    return json.loads(out)


def _patch_status(kubectl, namespace: str, name: str, status: dict[str, Any]) -> None:
    kubectl(
        "patch", "chatprovider", name, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )


def _ready(status: str = "True", reason: str = "ModelsDiscovered") -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": "2 models discovered",
        "lastTransitionTime": _now(),
        "observedGeneration": 1,
    }


def _assert_contains(stored: Any, written: Any, path: str = "spec") -> None:
    if isinstance(written, dict):
        for key, value in written.items():
            assert key in stored, f"{path}.{key} was dropped"
            _assert_contains(stored[key], value, f"{path}.{key}")
    else:
        assert stored == written, path


def _without_empty_lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_empty_lists(v) for k, v in value.items() if v != []}
    return value


# --- the resource type -------------------------------------------------------------------------


def test_the_resource_is_served_under_its_names_and_category(kubectl) -> None:
    out = kubectl("api-resources", "--api-group=ai.chatprovider.dev", "-o", "wide").stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    row = rows["chatproviders"]
    assert row[:5] == ["chatproviders", "cprov", "ai.chatprovider.dev/v1alpha1", "true",
                       "ChatProvider"]
    assert row[-1] == "ai"
    crd = json.loads(kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    assert "all" not in crd["spec"]["names"]["categories"]


def test_applying_the_crds_again_changes_nothing(kubectl, chatprovider_crd) -> None:
    before = json.loads(kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    out = kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=chatprovider-tests",
        "-f", str(chatprovider_crd),
    ).stdout
    after = json.loads(kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    assert "serverside-applied" in out
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_every_example_is_accepted_and_reads_back_into_the_model(
    kubectl, namespace, example: Path
) -> None:
    kubectl("apply", "-n", namespace, "-f", str(example))
    documents = [d for d in yaml.safe_load_all(example.read_text()) if d]
    providers = [d for d in documents if d["kind"] == "ChatProvider"]
    assert providers, f"{example.name} has no ChatProvider"
    for written in providers:
        stored = _get(kubectl, namespace, written["metadata"]["name"])
        provider = ChatProvider.model_validate(stored)
        _assert_contains(stored["spec"], written["spec"])  # plus the server's defaults
        assert provider.spec == ChatProviderSpec.model_validate(written["spec"])


def test_server_defaults_agree_with_the_model(kubectl, namespace) -> None:
    spec = {
        "endpoint": "http://vllm:8000/v1",
        "apiKeySecretRef": {"name": "vllm-api-key"},
        "discovery": {},
        "models": {},
        "verification": {},
        "tls": {},
        "timeouts": {},
    }
    stored = _create(kubectl, namespace, _provider("defaults", **spec))["spec"]
    expected = ChatProviderSpec.model_validate(spec).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    assert stored == _without_empty_lists(expected)


# --- what kubectl shows --------------------------------------------------------------------------


def test_kubectl_explain_shows_the_field_docstrings(kubectl) -> None:
    description = ChatProviderSpec.model_fields["endpoint"].description
    assert description
    expected = " ".join(description.split())
    deadline = time.monotonic() + 30  # the OpenAPI document is published a moment after the CRD
    while True:
        out = kubectl("explain", "chatprovider.spec.endpoint", check=False).stdout
        if expected in " ".join(out.split()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "FIELD: endpoint <string>" in out
    assert expected in " ".join(out.split())


def test_kubectl_get_shows_endpoint_readiness_and_model_count(kubectl, namespace) -> None:
    _create(kubectl, namespace, _provider("vllm"))
    _patch_status(kubectl, namespace, "vllm", {"conditions": [_ready()], "modelCount": 2})

    lines = kubectl("get", "chatproviders", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "ENDPOINT", "READY", "MODELS", "AGE"]
    assert lines[1].split()[:4] == ["vllm", "http://vllm:8000/v1", "True", "2"]

    wide = kubectl("get", "cprov", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "ENDPOINT", "READY", "MODELS", "REASON", "AGE"]
    assert wide[1].split()[:5] == ["vllm", "http://vllm:8000/v1", "True", "2", "ModelsDiscovered"]

    assert "vllm" in kubectl("get", "ai", "-n", namespace).stdout


def test_kubectl_wait_for_ready_follows_the_status_subresource(kubectl, namespace) -> None:
    _create(kubectl, namespace, _provider("vllm"))
    wait = ("wait", "--for=condition=Ready", "chatprovider/vllm", "-n", namespace)
    assert kubectl(*wait, "--timeout=1s", check=False).returncode != 0

    _patch_status(kubectl, namespace, "vllm", {"conditions": [_ready("False", "Unreachable")]})
    assert kubectl(*wait, "--timeout=1s", check=False).returncode != 0

    _patch_status(kubectl, namespace, "vllm", {"conditions": [_ready()]})
    assert "condition met" in kubectl(*wait, "--timeout=10s").stdout


# --- status ---------------------------------------------------------------------------------------


def _full_status() -> ChatProviderStatus:
    """A status with every field set, so that a pruned field cannot go unnoticed."""
    return ChatProviderStatus.model_validate(
        {
            "observedGeneration": 1,
            "conditions": [
                _ready(),
                {**_ready(), "type": "SecretResolved", "reason": "SecretFound"},
            ],
            "endpoints": {
                "chatCompletions": "http://vllm:8000/v1/chat/completions",
                "models": "http://vllm:8000/v1/models",
            },
            "models": [
                {"id": "meta-llama/Llama-3.1-8B-Instruct", "source": "discovered",
                 "ownedBy": "vllm"},
                {"id": "llama3:8b", "source": "static", "ownedBy": "library"},
            ],
            "modelCount": 2,
            "lastCheck": {"time": _now(), "latencyMs": 12, "verificationLatencyMs": 340},
            "credentialVersion": "vllm-api-key/4711",
        }
    )


def _assert_every_field_set(value: Any, path: str = "status") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _assert_every_field_set(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _assert_every_field_set(item, f"{path}[{i}]")
    else:
        assert value is not None, f"{path} is not set"


def test_every_status_field_survives_a_status_update(kubectl, namespace) -> None:
    _create(kubectl, namespace, _provider("vllm"))
    # Built once: it holds the current time, which must not tick between its two uses.
    expected = _full_status()
    status = expected.model_dump(by_alias=True, mode="json")
    _assert_every_field_set(status)

    _patch_status(kubectl, namespace, "vllm", status)
    stored = _get(kubectl, namespace, "vllm")
    assert stored["status"] == status
    assert ChatProvider.model_validate(stored).status == expected


def test_nulls_in_a_status_update_are_dropped_not_refused(kubectl, namespace) -> None:
    obj = _create(kubectl, namespace, _provider("vllm"))
    status = ChatProviderStatus.model_validate({"conditions": [_ready()], "modelCount": 0})
    obj["status"] = status.model_dump(by_alias=True, mode="json")  # None for every unset field
    assert None in obj["status"].values()

    kubectl("replace", "--subresource=status", "-n", namespace, "-f", "-", input=json.dumps(obj))
    stored = _get(kubectl, namespace, "vllm")["status"]
    assert stored == status.model_dump(by_alias=True, mode="json", exclude_none=True)


def test_status_is_only_written_through_the_subresource(kubectl, namespace) -> None:
    manifest = _provider("vllm")
    created = _create(kubectl, namespace, {**manifest, "status": {"modelCount": 7}})
    assert "status" not in created

    _patch_status(kubectl, namespace, "vllm", {"modelCount": 2})
    edited = _create(kubectl, namespace, _provider("vllm", displayName="vLLM"))
    assert edited["status"] == {"modelCount": 2}
    assert edited["metadata"]["generation"] == created["metadata"]["generation"] + 1


# --- what is refused ------------------------------------------------------------------------------


def _expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith(EXPECT), f"{path.name}: the first line must be '{EXPECT}<substring>'"
    return first.removeprefix(EXPECT)


def test_the_invalid_corpus_is_large_and_every_case_names_its_expectation() -> None:
    assert len(INVALID) >= 30
    for path in INVALID:
        assert _expectation(path)


@pytest.mark.parametrize("manifest", INVALID, ids=lambda path: path.stem)
def test_an_invalid_manifest_is_refused_naming_the_field(
    kubectl, namespace, manifest: Path
) -> None:
    proc = kubectl("apply", "-f", "-", "-n", namespace, check=False, input=manifest.read_text())
    assert proc.returncode != 0, f"{manifest.name} was accepted:\n{proc.stdout}"
    assert _expectation(manifest) in proc.stderr
