"""The windows quota counters are kept in: fixed calendar windows in UTC (pure).

A minute starts at second 0, a day at 00:00 UTC, a month at 00:00 UTC on its 1st. A request is
charged to the window it was admitted in (its settlement too, even when the answer ends in the
next one); when a window ends its counters start again from zero.

Why fixed windows rather than sliding ones: a fixed window has one counter per limit, so a
reservation is one atomic check-and-add and the admitted total in a window is *exactly* bounded
by the limit; its key expires when the window ends; "per day" and "per month" mean what a
budget means to the people who write them (a calendar day or month, with a reset that the
``x-ratelimit-reset-*`` headers and ``Retry-After`` can state exactly). A sliding log is exact
too but keeps one entry per request (200k tokens a minute from thousands of requests); a
sliding-window *counter* blends two windows and is an estimate, which could admit past the
limit. The price of fixed windows is a possible burst of up to twice a per-minute limit across
one window boundary (the end of one minute and the start of the next), which a per-minute
limit meant for fairness tolerates; concurrentRequests bounds bursts where that matters.

Windows are computed from the clock of the relay that admits the request; replicas' clocks are
expected to agree (NTP), and a skew of d seconds moves that replica's boundaries by d.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum

__all__ = ["Window", "go_duration", "window_end", "window_start"]


class Window(StrEnum):
    """A fixed calendar window, in UTC."""

    MINUTE = "minute"
    DAY = "day"
    MONTH = "month"


def _month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def window_start(window: Window, now: float) -> int:
    """The start (seconds since the epoch) of the window ``now`` falls in."""
    if window is Window.MINUTE:
        return math.floor(now) // 60 * 60
    if window is Window.DAY:
        return math.floor(now) // 86_400 * 86_400
    return int(_month_start(datetime.fromtimestamp(math.floor(now), UTC)).timestamp())


def window_end(window: Window, now: float) -> int:
    """The end (exclusive, seconds since the epoch) of the window ``now`` falls in."""
    if window is Window.MINUTE:
        return window_start(window, now) + 60
    if window is Window.DAY:
        return window_start(window, now) + 86_400
    start = _month_start(datetime.fromtimestamp(math.floor(now), UTC))
    following = (start.replace(year=start.year + 1, month=1) if start.month == 12
                 else start.replace(month=start.month + 1))
    return int(following.timestamp())


def go_duration(seconds: float) -> str:
    """``seconds`` as Go's ``time.Duration`` prints it, to the millisecond: the format of
    OpenAI's ``x-ratelimit-reset-*`` headers (``20ms``, ``1.5s``, ``6m0s``, ``1h2m3s``)."""
    ms = max(math.ceil(seconds * 1000 - 1e-6), 0)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    if minutes:
        return f"{minutes}m{secs}"
    return secs
