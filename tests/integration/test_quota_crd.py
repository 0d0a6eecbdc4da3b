"""The ChatQuota CRD on a real API server: kubectl's view of it, and what it refuses."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from chatprovider.api.crd import CHAT_QUOTA
from chatprovider.api.quota import ChatQuota, ChatQuotaSpec, ChatQuotaStatus

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "quota-teams.yaml"
INVALID = sorted((Path(__file__).parent / "invalid-quota").glob("*.yaml"))
EXPECT = "# expect: "


@pytest.fixture(scope="module")
def quota_crd(kubectl, chatprovider_crd) -> None:
    """crds/ holds the ChatQuota CRD too; wait until kubectl's discovery resolves it."""
    deadline = time.monotonic() + 30
    while (probe := kubectl("get", "chatquotas", "-A", check=False)).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail(f"chatquotas are not served: {probe.stderr}", pytrace=False)
        time.sleep(0.2)


pytestmark = pytest.mark.usefixtures("quota_crd")


def _quota(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ai.chatprovider.dev/v1alpha1",
        "kind": "ChatQuota",
        "metadata": {"name": name},
        "spec": {"providers": {"names": ["vllm"]},
                 "subjects": [{"kind": "User", "name": "alice"}],
                 "limits": {"requestsPerMinute": 20}, **spec},
    }


def _get(kubectl, namespace: str, name: str) -> dict[str, Any]:
    return json.loads(kubectl("get", "chatquota", name, "-n", namespace, "-o", "json").stdout)


def test_the_resource_is_served_under_its_names_and_category(kubectl) -> None:
    out = kubectl("api-resources", "--api-group=ai.chatprovider.dev", "-o", "wide").stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    row = rows["chatquotas"]
    assert row[:5] == ["chatquotas", "cquota", "ai.chatprovider.dev/v1alpha1", "true",
                       "ChatQuota"]
    assert row[-1] == "ai"
    crd = json.loads(kubectl("get", "crd", CHAT_QUOTA.crd_name, "-o", "json").stdout)
    assert crd["spec"]["names"]["categories"] == ["ai"]


def test_the_example_is_accepted_and_reads_back_into_the_model(kubectl, namespace) -> None:
    kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    quotas = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d["kind"] == "ChatQuota"]
    assert len(quotas) == 2
    for written in quotas:
        stored = _get(kubectl, namespace, written["metadata"]["name"])
        assert ChatQuota.model_validate(stored).spec == ChatQuotaSpec.model_validate(
            written["spec"])
        assert stored["spec"]["scope"] == written["spec"]["scope"]


def test_the_server_defaults_the_scope_like_the_model(kubectl, namespace) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_quota("defaults")))
    stored = _get(kubectl, namespace, "defaults")["spec"]
    assert stored["scope"] == "PerSubject"
    assert ChatQuotaSpec.model_validate(stored).model_dump(
        by_alias=True, exclude_none=True, mode="json", exclude_defaults=False
    )["scope"] == stored["scope"]


def test_kubectl_get_shows_scope_limits_and_readiness(kubectl, namespace) -> None:
    quota = _quota("team-a", scope="Shared",
                   limits={"requestsPerMinute": 20, "tokensPerMinute": 200000})
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(quota))
    status = {"conditions": [{"type": "Ready", "status": "True", "reason": "ProvidersSelected",
                              "message": "governs 1 provider",
                              "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    kubectl("patch", "chatquota", "team-a", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": status}))
    lines = kubectl("get", "cquota", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "SCOPE", "RPM", "TPM", "READY", "AGE"]
    assert lines[1].split()[:5] == ["team-a", "Shared", "20", "200000", "True"]
    wide = kubectl("get", "chatquotas", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[1].split()[5] == "ProvidersSelected"
    assert "team-a" in kubectl("get", "ai", "-n", namespace).stdout


def test_a_full_status_survives_a_status_update(kubectl, namespace) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_quota("q")))
    status = ChatQuotaStatus.model_validate({
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "ProvidersSelected",
                        "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z",
                        "observedGeneration": 1}],
        "providers": ["vllm"],
        "usage": [{"subject": "User:alice", "requestsThisMinute": 3, "tokensThisMinute": 10,
                   "promptTokensThisMinute": 4, "completionTokensThisMinute": 6,
                   "tokensToday": 100, "tokensThisMonth": 1000, "concurrentRequests": 1,
                   "peakFraction": 0.15}],
        "usageTime": "2026-01-01T00:00:05Z",
    }).model_dump(by_alias=True, exclude_none=True, mode="json")
    kubectl("patch", "chatquota", "q", "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))
    assert _get(kubectl, namespace, "q")["status"] == status


def _expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith(EXPECT), f"{path.name}: the first line must be '{EXPECT}<substring>'"
    return first.removeprefix(EXPECT)


def test_the_invalid_corpus_covers_every_part_of_the_spec() -> None:
    assert len(INVALID) >= 20
    fields = {_expectation(p).split(":")[0].split(".")[1].split("[")[0]
              for p in INVALID if _expectation(p).startswith("spec.")}
    assert fields >= {"providers", "subjects", "scope", "limits"}


@pytest.mark.parametrize("manifest", INVALID, ids=lambda path: path.stem)
def test_a_malformed_quota_is_refused_naming_the_field(kubectl, namespace, manifest: Path) -> None:
    proc = kubectl("apply", "-f", "-", "-n", namespace, check=False, input=manifest.read_text())
    assert proc.returncode != 0, f"{manifest.name} was accepted:\n{proc.stdout}"
    assert _expectation(manifest) in proc.stderr


def test_a_well_formed_twin_of_each_refusal_is_accepted(kubectl, namespace) -> None:
    """The positive control: the corpus' skeleton itself is valid."""
    for i, spec in enumerate([
        {},
        {"providers": {"selector": {}}},
        {"providers": {"selector": {"matchExpressions": [{"key": "pool", "operator": "Exists"}],
                                    "matchLabels": {"example.com/pool": "gpu"}}}},
        {"subjects": [{"kind": "ServiceAccount", "namespace": "team-a", "name": "app"},
                      {"kind": "Group", "name": "system:serviceaccounts:team-b"}]},
        {"limits": {"tokensPerMonth": 0, "concurrentRequests": 1}},
    ]):
        kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_quota(f"ok-{i}", **spec)))
