"""Fixed UTC windows and OpenAI's reset format."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatprovider.domain.quota.windows import Window, go_duration, window_end, window_start


def _t(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("window", "now", "start", "end"), [
    (Window.MINUTE, "2026-03-04T05:06:07.9", "2026-03-04T05:06:00", "2026-03-04T05:07:00"),
    (Window.MINUTE, "2026-03-04T05:06:00", "2026-03-04T05:06:00", "2026-03-04T05:07:00"),
    (Window.DAY, "2026-03-04T23:59:59.999", "2026-03-04T00:00:00", "2026-03-05T00:00:00"),
    (Window.MONTH, "2026-12-31T23:59:59", "2026-12-01T00:00:00", "2027-01-01T00:00:00"),
    (Window.MONTH, "2028-02-29T12:00:00", "2028-02-01T00:00:00", "2028-03-01T00:00:00"),
    (Window.MONTH, "2026-01-01T00:00:00", "2026-01-01T00:00:00", "2026-02-01T00:00:00"),
])
def test_windows_are_calendar_windows_in_utc(window: Window, now: str, start: str,
                                             end: str) -> None:
    assert window_start(window, _t(now)) == _t(start)
    assert window_end(window, _t(now)) == _t(end)


@given(st.floats(min_value=0, max_value=4e9), st.sampled_from(list(Window)))
def test_a_moment_lies_in_its_window_and_the_next_window_starts_where_it_ends(
        now: float, window: Window) -> None:
    start, end = window_start(window, now), window_end(window, now)
    assert start <= now < end
    assert window_start(window, end) == end


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.0204, "21ms"), (0.999, "999ms"), (1, "1s"), (1.5, "1.5s"), (59.25, "59.25s"),
    (60, "1m0s"), (360, "6m0s"), (3723, "1h2m3s"), (86_400, "24h0m0s"), (-3, "0s"),
])
def test_resets_are_written_as_go_durations_like_openai_does(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
