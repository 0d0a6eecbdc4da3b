"""A check's status: conditions keep their transition times, measurements never cause a write
on their own (a heartbeat may), Events name exactly what changed; model lists are bounded."""

from __future__ import annotations

import datetime as dt

import pytest

from chatprovider.api.v1alpha1 import ChatProviderStatus, Condition
from chatprovider.domain.conditions import ConditionType, DesiredCondition, Reason, merge_conditions
from chatprovider.domain.discovery import ModelEntry, ModelsShapeError, offered_models, parse_models
from chatprovider.domain.probe import CallOutcome, ProbeResult, assess
from chatprovider.domain.status import (
    StatusInputs,
    build_status,
    needs_write,
    ready_condition,
    transitions,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
EMPTY = ChatProviderStatus()


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _status(result: ProbeResult, old: ChatProviderStatus = EMPTY, now: float = 0, cred=None,
            latency: int = 5) -> ChatProviderStatus:
    return build_status(old, assess(result), StatusInputs(
        generation=1, now=at(now), chat_completions_url="http://h/v1/chat/completions",
        models_url="http://h/v1/models", credential_version=cred, latency_ms=latency,
        verification_latency_ms=None))


def ready(models=("a",), latency=5) -> ProbeResult:
    return ProbeResult(models_call=CallOutcome(status=200, latency_ms=latency,
                                               models=tuple(ModelEntry(m) for m in models)))


READY = ready()
DOWN = ProbeResult(models_call=CallOutcome(failure=Reason.CONNECTION_REFUSED, detail="x"))


def test_last_transition_time_is_kept_while_status_is_unchanged():
    first = _status(READY)
    second = _status(READY, old=first, now=300)
    assert ready_condition(second).last_transition_time == "2026-01-01T00:00:00Z"
    third = _status(DOWN, old=second, now=600)
    assert ready_condition(third).last_transition_time == "2026-01-01T00:10:00Z"


def test_only_our_own_condition_types_are_applied():
    foreign = Condition(type="Audited", status="True", reason="X",
                        last_transition_time="2026-01-01T00:00:00Z")
    merged = merge_conditions([foreign], [DesiredCondition(ConditionType.READY, "True",
                                                           Reason.READY, "")], "now", 1)
    assert [c.type for c in merged] == ["Ready"]  # the API server keeps the foreign one


def test_a_re_check_that_only_measures_differently_writes_nothing():
    first = _status(READY, latency=5)
    again = _status(ready(latency=900), old=first, now=30, latency=900)
    assert again.last_check.latency_ms == 900
    assert not needs_write(first, again, heartbeat=0, now=at(10**6))
    assert not needs_write(first, again, heartbeat=3600, now=at(3599))
    assert needs_write(first, again, heartbeat=3600, now=at(3600))  # the heartbeat
    assert needs_write(first, _status(DOWN, old=first), heartbeat=3600, now=at(1))


def test_two_checks_within_one_second_have_different_last_checks():
    """A refresh that was asked for is answered with a write; if two checks a moment apart
    looked alike, that write would change nothing, and whoever asked (the relay's passive
    health) would never see the re-check."""
    first = _status(READY)
    again = _status(READY, old=first, now=0.25)
    assert first.last_check.time == "2026-01-01T00:00:00.000000Z"
    assert again.last_check.time == "2026-01-01T00:00:00.250000Z"
    assert ready_condition(again).last_transition_time == "2026-01-01T00:00:00Z"


def test_no_condition_message_carries_a_measurement():
    for result in (ready(latency=7), ready(latency=700)):
        status = _status(result, latency=result.models_call.latency_ms)
        assert not any("ms" in c.message.split() or "7" in c.message for c in status.conditions)


def test_a_field_that_no_longer_applies_is_absent_from_the_new_status():
    first = _status(READY, latency=5)
    down = _status(DOWN, old=first, latency=None)
    dumped = down.model_dump(by_alias=True, exclude_none=True)
    assert "latencyMs" not in dumped["lastCheck"] and dumped["models"] == []


def test_transitions_name_what_changed_and_repeat_nothing():
    first = _status(READY, cred="key@1")
    (became,) = transitions(EMPTY, first)  # one Event: readiness, naming the models it brings
    assert became.reason == "BecameReady"
    assert became.message.endswith("; models added: " + ", ".join(m.id for m in first.models))
    assert transitions(first, _status(READY, old=first, cred="key@1")) == []
    down = _status(DOWN, old=first, cred="key@1")
    (gone,) = transitions(first, down)
    assert (gone.reason, gone.type) == ("BecameUnready", "Warning")
    assert "; models removed: " in gone.message
    assert transitions(down, _status(DOWN, old=down, cred="key@1")) == []
    back = _status(READY, old=down, cred="key@1")
    assert [e.reason for e in transitions(down, back)] == ["BecameReady"]
    rotated = _status(ready(("a", "b")), old=first, cred="key@2")
    assert [e.reason for e in transitions(first, rotated)] == ["ModelsAdded", "CredentialRotated"]


def test_one_model_is_one_model():
    assert ready_condition(_status(READY)).message == "1 model offered"
    assert "1 model offered (1 discovered)" in [c.message for c in _status(READY).conditions]


def test_parse_models_bounds_and_cleans():
    payload = {"object": "list", "data": [{"id": "a"}, {"id": "a"}, {"id": "x" * 300},
                                          {"id": 3}, {"id": "b\n"}, {"nope": 1}, "junk"]}
    assert [m.id for m in parse_models(payload)] == ["a", "b"]
    assert len(parse_models({"data": [{"id": f"m{i}"} for i in range(1000)]})) == 500
    with pytest.raises(ModelsShapeError):
        parse_models({"error": "x"})
    with pytest.raises(ModelsShapeError):
        parse_models({"data": [{"id": 1}]})
    assert parse_models({"data": []}) == []


def test_offered_models_merge_static_and_filter():
    got = offered_models([ModelEntry("llama3:8b")], ["llama3:8b", "mistral"], ["llama*"])
    assert [(m.id, m.source) for m in got] == [("llama3:8b", "discovered")]
