from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatprovider.domain.conditions import ConditionType, DesiredCondition, Reason, merge_conditions
from chatprovider.domain.discovery import ModelEntry, ModelsShapeError, offered_models, parse_models
from chatprovider.domain.durations import parse_duration
from chatprovider.domain.probe import CallOutcome, ProbeResult, assess
from chatprovider.domain.status import StatusInputs, build_status, needs_write, transitions


def _status(result: ProbeResult, old=None, now="2026-01-01T00:00:00Z", cred=None):
    return build_status(old or {}, assess(result), StatusInputs(
        generation=1, now=now, chat_completions_url="http://h/v1/chat/completions",
        models_url="http://h/v1/models", credential_version=cred, latency_ms=5,
        verification_latency_ms=None))


READY = ProbeResult(models_call=CallOutcome(status=200, latency_ms=5,
                                            models=(ModelEntry("a"),)))
DOWN = ProbeResult(models_call=CallOutcome(failure=Reason.CONNECTION_REFUSED, detail="x"))


def test_last_transition_time_is_kept_while_status_is_unchanged():
    first = _status(READY)
    second = _status(READY, old=first, now="2026-01-01T00:05:00Z")
    ready = [c for c in second["conditions"] if c["type"] == "Ready"][0]
    assert ready["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    third = _status(DOWN, old=second, now="2026-01-01T00:10:00Z")
    ready = [c for c in third["conditions"] if c["type"] == "Ready"][0]
    assert ready["lastTransitionTime"] == "2026-01-01T00:10:00Z"


def test_foreign_conditions_are_preserved():
    foreign = {"type": "Audited", "status": "True", "reason": "X", "message": "",
               "lastTransitionTime": "t"}
    merged = merge_conditions([foreign], [DesiredCondition(ConditionType.READY, "True",
                                                           Reason.READY, "")], "now", 1)
    assert foreign in merged


def test_needs_write_ignores_last_check_until_it_is_old():
    first = _status(READY)
    again = _status(READY, old=first, now="2026-01-01T00:00:30Z")
    assert not needs_write(first, again, refresh_after=150, age_of_last_check=30)
    assert needs_write(first, again, refresh_after=150, age_of_last_check=151)
    assert needs_write(first, _status(DOWN, old=first), refresh_after=150, age_of_last_check=1)


def test_transitions_name_what_changed_and_repeat_nothing():
    first = _status(READY, cred="key@1")
    assert [e.reason for e in transitions({}, first)] == ["BecameReady"]
    assert transitions(first, _status(READY, old=first, cred="key@1")) == []
    down = _status(DOWN, old=first, cred="key@1")
    events = transitions(first, down)
    assert [e.reason for e in events] == ["BecameUnready"] and events[0].type == "Warning"
    assert transitions(down, _status(DOWN, old=down, cred="key@1")) == []
    more = ProbeResult(models_call=CallOutcome(status=200, models=(ModelEntry("a"),
                                                                   ModelEntry("b"))))
    rotated = _status(more, old=first, cred="key@2")
    assert [e.reason for e in transitions(first, rotated)] == ["ModelsAdded", "CredentialRotated"]


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


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400),
                                                ("250ms", 0.25), ("1.5s", 1.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "s", "5 s", "-5s", "5d", "1h 30m"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@given(st.integers(0, 10**6), st.sampled_from(["ms", "s", "m", "h"]))
def test_duration_round_trip(n, unit):
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    assert parse_duration(f"{n}{unit}") == pytest.approx(n * factor)
