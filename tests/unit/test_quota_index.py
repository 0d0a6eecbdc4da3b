"""The relay's index of ChatQuotas, fed by watch events."""

from __future__ import annotations

import logging

from chatprovider.quotas import QuotaIndex


def _body(name: str, namespace: str = "llm", rpm: int = 10, **spec: object) -> dict:
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"providers": {"names": ["vllm"]},
                     "subjects": [{"kind": "Group", "name": "system:authenticated"}],
                     "limits": {"requestsPerMinute": rpm}, **spec}}


def test_added_modified_and_deleted_quotas_are_what_governs() -> None:
    index = QuotaIndex()
    index.observe("ADDED", _body("a"))
    index.observe("ADDED", _body("b", "other"))
    assert [q.name for q in index.in_namespace("llm")] == ["a"]
    version = index.version
    index.observe("MODIFIED", _body("a", rpm=3))
    assert index.in_namespace("llm")[0].spec.limits.requests_per_minute == 3
    assert index.version > version
    index.observe("DELETED", _body("a"))
    assert index.in_namespace("llm") == ()
    assert len(index) == 1 and [str(q) for q in index] == ["other/b"]


def test_a_quota_that_no_longer_validates_stops_governing(caplog) -> None:
    index = QuotaIndex()
    index.observe("ADDED", _body("a"))
    with caplog.at_level(logging.WARNING):
        index.observe("MODIFIED", _body("a", scope="Nonsense"))
    assert index.in_namespace("llm") == ()
    assert "llm/a" in caplog.text
