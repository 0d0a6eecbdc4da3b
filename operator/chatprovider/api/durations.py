"""Go-style durations (``30s``, ``5m``, ``1h30m``, ``250ms``), as the CRD accepts them.

In the models a duration is a :class:`~datetime.timedelta`, parsed once when the spec is
validated (:data:`Duration`); the API server sees the string, checked by the same pattern and by
CEL's ``duration()``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = ["DURATION_PATTERN", "Duration", "format_duration", "parse_duration"]

#: A Go-style duration such as ``30s``, ``5m`` or ``1h30m`` (what CEL's ``duration()`` accepts).
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """``text`` as a timedelta; raises ValueError for anything the CRD pattern would refuse."""
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r} (expected e.g. 30s, 5m, 1h30m)")
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    """The shortest Go-style spelling of ``value`` (``5m``, ``1h30m``, ``1.5s``, ``250ms``)."""
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if millis and not (hours or minutes or seconds):
        parts.append(f"{millis}ms")
    elif seconds or millis:
        parts.append(f"{seconds}.{millis:03d}".rstrip("0").rstrip(".") + "s")
    return "".join(parts)


def _parse(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


#: A duration field: a timedelta in Python, a Go-style string on the wire and in the schema.
Duration = Annotated[
    timedelta,
    BeforeValidator(_parse),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "maxLength": 32}),
]
