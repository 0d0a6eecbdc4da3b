"""The status report of a quota: its sets of counters closest to a limit (pure).

The operator reads every counter of a quota (a store's ``scan`` of :func:`quota_prefix`) and
:func:`usage_report` turns them into ``status.usage``: one entry per set of counters, counts of the
current windows only (an older window's counter may linger until it expires), sorted by the
largest share of a limit used, at most :data:`TOP` entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

from chatprovider.api.quota import SubjectUsage
from chatprovider.domain.quota.limits import LIMIT_FIELDS, Metric, Quota, quota_prefix
from chatprovider.domain.quota.windows import Window, window_start

__all__ = ["CAPS", "TOP", "usage_report"]

#: How many sets of counters ``status.usage`` lists.
TOP = 20
_FIELD = {
    (Metric.REQUESTS, Window.MINUTE): "requests_this_minute",
    (Metric.TOKENS, Window.MINUTE): "tokens_this_minute",
    (Metric.PROMPT_TOKENS, Window.MINUTE): "prompt_tokens_this_minute",
    (Metric.COMPLETION_TOKENS, Window.MINUTE): "completion_tokens_this_minute",
    (Metric.TOKENS, Window.DAY): "tokens_today",
    (Metric.TOKENS, Window.MONTH): "tokens_this_month",
    (Metric.CONCURRENT, None): "concurrent_requests",
}
#: The Limits attribute that caps each field of a SubjectUsage, in the order of LIMIT_FIELDS.
CAPS = {_FIELD[kind]: attribute for attribute, kind in LIMIT_FIELDS.items()}


def _parse(rest: str, now: float) -> tuple[str, str] | None:
    """(subject, status field) of a counter key after the quota's prefix; None when it is not
    a counter of the current windows."""
    parts, start = rest.split("|"), ""
    if len(parts) == 2:
        subject, metric, window = parts[0], parts[1], None
    elif len(parts) == 3:
        subject, metric, window_part = parts
        window, _, start = window_part.partition(":")
    else:
        return None
    try:
        kind = (Metric(metric), Window(window) if window is not None else None)
    except ValueError:
        return None
    if kind not in _FIELD:
        return None
    if kind[1] is not None and start != str(window_start(kind[1], now)):
        return None
    return unquote(subject), _FIELD[kind]


def usage_report(quota: Quota, counters: Mapping[str, int], now: float,
                 top: int = TOP) -> list[SubjectUsage]:
    """``status.usage`` from the quota's ``counters`` (key to value) at ``now``."""
    prefix = quota_prefix(str(quota))
    found: dict[str, dict[str, int]] = {}
    for key, value in counters.items():
        if not key.startswith(prefix):
            continue
        parsed = _parse(key[len(prefix):], now)
        if parsed is not None:
            found.setdefault(parsed[0], {})[parsed[1]] = value
    entries = []
    for subject, fields in found.items():
        shares = []
        for name, value in fields.items():
            cap = getattr(quota.spec.limits, CAPS[name])
            if cap is not None:
                shares.append(value / cap if cap else (1.0 if value == 0 else float(value)))
        peak = max(shares, default=0.0)
        entries.append(SubjectUsage(subject=subject, peak_fraction=round(peak, 4), **fields))
    entries.sort(key=lambda e: (-(e.peak_fraction or 0.0), e.subject))
    return entries[:top]
