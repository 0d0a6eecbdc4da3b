"""Which quotas govern a caller and a provider, and the counters they name."""

from __future__ import annotations

import pytest
from tests.unit.domain.quota.helpers import ALICE, APP, PROVIDER, Caller, quota

from chatprovider.domain.quota.limits import Metric, applicable_limits
from chatprovider.domain.quota.subjects import SHARED, counter_subjects
from chatprovider.domain.quota.windows import Window
from chatprovider.domain.routing import ProviderRef

NOW = 1_780_000_000.0
ALL = {"requestsPerMinute": 1, "tokensPerMinute": 2, "promptTokensPerMinute": 3,
       "completionTokensPerMinute": 4, "tokensPerDay": 5, "tokensPerMonth": 6,
       "concurrentRequests": 7}


def test_every_limit_becomes_one_counter_of_its_metric_and_window() -> None:
    limits = applicable_limits([quota(limits=ALL)], ALICE, PROVIDER, {})
    assert [(lim.metric, lim.window, lim.capacity) for lim in limits] == [
        (Metric.REQUESTS, Window.MINUTE, 1), (Metric.TOKENS, Window.MINUTE, 2),
        (Metric.PROMPT_TOKENS, Window.MINUTE, 3), (Metric.COMPLETION_TOKENS, Window.MINUTE, 4),
        (Metric.TOKENS, Window.DAY, 5), (Metric.TOKENS, Window.MONTH, 6),
        (Metric.CONCURRENT, None, 7)]
    assert len({lim.key(NOW) for lim in limits}) == 7
    assert [lim.budget for lim in limits] == [False] * 4 + [True, True, False]


def test_a_quota_governs_only_its_namespace_and_the_providers_it_selects() -> None:
    q = quota()
    assert applicable_limits([q], ALICE, PROVIDER, {})
    assert not applicable_limits([q], ALICE, ProviderRef("other", "vllm"), {})
    assert not applicable_limits([q], ALICE, ProviderRef("llm", "tgi"), {})


@pytest.mark.parametrize(("selector", "labels", "selected"), [
    ({}, {}, True),
    ({"matchLabels": {"pool": "gpu"}}, {"pool": "gpu", "x": "y"}, True),
    ({"matchLabels": {"pool": "gpu"}}, {"pool": "cpu"}, False),
    ({"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a", "b"]}]},
     {"pool": "b"}, True),
    ({"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]}, {}, False),
    ({"matchExpressions": [{"key": "pool", "operator": "NotIn", "values": ["a"]}]}, {}, True),
    ({"matchExpressions": [{"key": "pool", "operator": "NotIn", "values": ["a"]}]},
     {"pool": "a"}, False),
    ({"matchExpressions": [{"key": "pool", "operator": "Exists"}]}, {"pool": ""}, True),
    ({"matchExpressions": [{"key": "pool", "operator": "DoesNotExist"}]}, {"pool": ""}, False),
])
def test_label_selectors_select_like_kubernetes(selector: dict, labels: dict,
                                                selected: bool) -> None:
    q = quota(providers={"selector": selector})
    assert bool(applicable_limits([q], ALICE, PROVIDER, labels)) is selected


@pytest.mark.parametrize(("subject", "caller", "named"), [
    ({"kind": "User", "name": "alice"}, ALICE, True),
    ({"kind": "User", "name": "alice"}, Caller("alice2"), False),
    ({"kind": "Group", "name": "team-a"}, ALICE, True),
    ({"kind": "ServiceAccount", "namespace": "team-b", "name": "app"}, APP, True),
    ({"kind": "ServiceAccount", "namespace": "team-a", "name": "app"}, APP, False),
    ({"kind": "User", "name": "system:serviceaccount:team-b:app"}, APP, True),
    # a whole namespace, as RBAC writes it, even when the review listed no groups
    ({"kind": "Group", "name": "system:serviceaccounts:team-b"}, APP, True),
    ({"kind": "Group", "name": "system:serviceaccounts:team-a"}, APP, False),
    ({"kind": "Group", "name": "system:serviceaccounts"}, APP, True),
    ({"kind": "Group", "name": "system:serviceaccounts"}, ALICE, False),
    ({"kind": "Group", "name": "system:authenticated"}, ALICE, True),
])
def test_subjects_name_callers_as_rbac_does(subject: dict, caller: Caller, named: bool) -> None:
    q = quota(subjects=[subject])
    assert bool(applicable_limits([q], caller, PROVIDER, {})) is named


def test_scopes_choose_whose_counters_are_charged() -> None:
    subjects = [{"kind": "Group", "name": "team-a"}, {"kind": "User", "name": "alice"},
                {"kind": "User", "name": "bob"}]
    spec = quota(subjects=subjects).spec
    assert list(counter_subjects(spec.scope, spec.subjects, ALICE)) == ["Group:team-a",
                                                                        "User:alice"]
    per_caller = quota(subjects=subjects, scope="PerCaller").spec
    assert list(counter_subjects(per_caller.scope, per_caller.subjects, ALICE)) == ["alice"]
    shared = quota(subjects=subjects, scope="Shared").spec
    assert list(counter_subjects(shared.scope, shared.subjects, ALICE)) == [SHARED]
    assert list(counter_subjects(shared.scope, shared.subjects, APP)) == []


def test_shared_counters_are_the_same_for_two_callers_and_per_caller_ones_are_not() -> None:
    bob = Caller("bob", ("team-a",))
    subjects = [{"kind": "Group", "name": "team-a"}]
    for scope, same in (("Shared", True), ("PerSubject", True), ("PerCaller", False)):
        q = quota(subjects=subjects, scope=scope)
        [a] = applicable_limits([q], ALICE, PROVIDER, {})
        [b] = applicable_limits([q], bob, PROVIDER, {})
        assert (a.key(NOW) == b.key(NOW)) is same, scope


def test_two_quotas_both_apply_and_keep_their_own_counters() -> None:
    limits = applicable_limits([quota("a"), quota("b")], ALICE, PROVIDER, {})
    assert [lim.quota for lim in limits] == ["llm/a", "llm/b"]
    assert limits[0].key(NOW) != limits[1].key(NOW)


def test_a_new_window_is_a_new_counter_and_subject_names_cannot_collide() -> None:
    [lim] = applicable_limits([quota(scope="PerCaller")], ALICE, PROVIDER, {})
    assert lim.key(NOW) == lim.key(NOW + 1 - NOW % 60 + 58)
    assert lim.key(NOW) != lim.key(NOW + 60)
    odd = [*applicable_limits([quota(scope="PerCaller", subjects=[
        {"kind": "User", "name": "a|requests"}])], Caller("a|requests"), PROVIDER, {})]
    assert "|requests|requests" not in odd[0].key(NOW)
    assert odd[0].key(NOW).count("|") == lim.key(NOW).count("|")
