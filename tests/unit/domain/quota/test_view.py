"""chatprovider usage's rows, notes and table (pure)."""

from __future__ import annotations

from chatprovider.api.quota import ChatQuota
from chatprovider.domain.quota.view import quota_notes, table, usage_rows


def resource(name: str, namespace: str = "llm", usage: list | None = None,
             conditions: list | None = None) -> ChatQuota:
    return ChatQuota.model_validate({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"providers": {"names": ["vllm"]},
                 "subjects": [{"kind": "Group", "name": "team"}], "scope": "PerCaller",
                 "limits": {"tokensPerDay": 1000, "requestsPerMinute": 10}},
        "status": {"usage": usage or [], "usageTime": "2026-12-03T16:00:00Z",
                   "conditions": conditions or []}})


READY = [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
          "lastTransitionTime": "2026-12-03T16:00:00Z"}]


def test_one_row_per_subject_and_limit_sorted_by_quota() -> None:
    used = resource("b", usage=[{"subject": "alice", "tokensToday": 700, "peakFraction": 0.7},
                                {"subject": "bob", "requestsThisMinute": 2}])
    rows = usage_rows([used, resource("a")])
    assert [(r.quota, r.subject, r.limit, r.used, r.max) for r in rows] == [
        ("a", "-", "requestsPerMinute", None, 10), ("a", "-", "tokensPerDay", None, 1000),
        ("b", "alice", "requestsPerMinute", 0, 10), ("b", "alice", "tokensPerDay", 700, 1000),
        ("b", "bob", "requestsPerMinute", 2, 10), ("b", "bob", "tokensPerDay", 0, 1000)]
    assert rows[3].as_json() == {"namespace": "llm", "quota": "b", "subject": "alice",
                                 "limit": "tokensPerDay", "used": 700, "max": 1000,
                                 "usage_time": "2026-12-03T16:00:00Z", "fraction": 0.7}
    assert rows[0].as_json()["fraction"] is None


def test_the_table_is_aligned_as_kubectl_prints_one() -> None:
    rows = usage_rows([resource("b", usage=[{"subject": "alice", "tokensToday": 700}])])
    assert table(rows, namespaces=False).splitlines() == [
        "QUOTA   SUBJECT   LIMIT               USED   MAX    USE",
        "b       alice     requestsPerMinute   0      10     0%",
        "b       alice     tokensPerDay        700    1000   70%"]
    assert table(rows, namespaces=True).splitlines()[1].startswith("llm         b ")


def test_quotas_not_ready_or_without_usage_are_noted() -> None:
    orphan = resource("orphan", conditions=[
        {"type": "Ready", "status": "False", "reason": "NoProvidersSelected",
         "message": "governs nothing", "lastTransitionTime": "2026-12-03T16:00:00Z"}])
    assert quota_notes([resource("fine", conditions=READY), orphan, resource("new")]) == [
        "llm/orphan: Ready False (NoProvidersSelected): governs nothing",
        "llm/new: no status yet (is the operator running?)"]
