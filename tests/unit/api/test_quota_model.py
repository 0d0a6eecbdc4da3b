"""The ChatQuota model and its CRD schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chatprovider.api import quota as api
from chatprovider.api.crd import CHAT_QUOTA

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "quota-teams.yaml"


def _schema() -> dict:
    return CHAT_QUOTA.build()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_the_at_least_one_limit_rule_names_every_limit() -> None:
    wire = {field.alias for field in api.Limits.model_fields.values()}
    assert set(api._LIMIT_NAMES) == wire
    limits = _schema()["properties"]["spec"]["properties"]["limits"]
    assert set(limits["properties"]) == wire
    [rule] = limits["x-kubernetes-validations"]
    assert all(f"has(self.{name})" in rule["rule"] for name in wire)


def test_the_example_round_trips_through_the_model() -> None:
    quotas = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d["kind"] == "ChatQuota"]
    assert quotas
    for manifest in quotas:
        quota = api.ChatQuota.model_validate(manifest)
        dumped = quota.model_dump(by_alias=True, exclude_none=True, mode="json")
        assert api.ChatQuota.model_validate(dumped) == quota
        assert dumped["spec"]["limits"] == manifest["spec"]["limits"]


def test_defaults_and_wire_names() -> None:
    spec = api.ChatQuotaSpec.model_validate({
        "providers": {"names": ["vllm"]},
        "subjects": [{"kind": "ServiceAccount", "namespace": "team-a", "name": "app"}],
        "limits": {"tokensPerMinute": 10},
    })
    assert spec.scope is api.QuotaScope.PER_SUBJECT
    assert spec.subjects[0].kind is api.SubjectKind.SERVICE_ACCOUNT
    assert spec.limits.tokens_per_minute == 10 and spec.limits.requests_per_minute is None


@pytest.mark.parametrize("bad", [
    {"limits": {"tokensPerMinute": -1}},
    {"limits": {"tokensPerMinute": 10**16}},
    {"limits": {"tokensPerWeek": 1}},
    {"subjects": []},
    {"scope": "PerTeam"},
])
def test_the_model_refuses_what_the_schema_refuses(bad: dict) -> None:
    spec = {"providers": {"names": ["vllm"]}, "subjects": [{"kind": "User", "name": "alice"}],
            "limits": {"requestsPerMinute": 1}, **bad}
    with pytest.raises(ValueError):
        api.ChatQuotaSpec.model_validate(spec)


def test_status_usage_is_bounded() -> None:
    status = _schema()["properties"]["status"]["properties"]
    assert status["usage"]["maxItems"] == 20
    assert status["conditions"]["x-kubernetes-list-type"] == "map"
