"""Go-style durations (``30s``, ``5m``, ``1h30m``, ``250ms``), as the CRD accepts them."""

from __future__ import annotations

import re

__all__ = ["parse_duration"]

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises ValueError for anything the CRD pattern would refuse."""
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r} (expected e.g. 30s, 5m, 1h30m)")
    return total
