"""Go-style durations: parsed once into a timedelta when the spec is validated, written back in
their shortest form."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatprovider.api.durations import format_duration, parse_duration
from chatprovider.api.v1alpha1 import ChatProviderSpec


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400),
                                                ("250ms", 0.25), ("1.5s", 1.5), ("1m0s", 60)])
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "5 s", "-5s", "5d", "1h 30m"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(300, "5m"), (5400, "1h30m"), (0.25, "250ms"),
                                                (1.5, "1.5s"), (3661, "1h1m1s"), (0, "0s")])
def test_formatting_is_the_shortest_spelling(seconds, text):
    assert format_duration(timedelta(seconds=seconds)) == text


@given(st.integers(0, 10**9))
def test_format_then_parse_is_the_identity_to_the_millisecond(ms):
    value = timedelta(milliseconds=ms)
    assert parse_duration(format_duration(value)) == value


def test_spec_durations_are_timedeltas_and_dump_as_strings():
    spec = ChatProviderSpec.model_validate({"endpoint": "http://h:1",
                                            "discovery": {"interval": "1h30m"}})
    assert spec.discovery.interval == timedelta(minutes=90)
    assert spec.timeouts.connect == timedelta(seconds=5)
    dumped = spec.model_dump(by_alias=True, mode="json")
    assert dumped["discovery"]["interval"] == "1h30m" and dumped["timeouts"]["request"] == "30s"
