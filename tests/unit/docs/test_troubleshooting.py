"""docs/troubleshooting.md documents every condition reason the operator writes, with the retry
behaviour the operator really has."""

from __future__ import annotations

import re
from pathlib import Path

from chatprovider.domain.conditions import ConditionType, Reason
from chatprovider.domain.probe import PERMANENT_REASONS

DOC = Path(__file__).resolve().parents[3] / "docs" / "troubleshooting.md"


def _rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `(\w+)` \|(.*)\|$", line)
        if match:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", match.group(2))]
            if len(cells) == 4:  # the reasons table (not the relay errors table)
                rows[match.group(1)] = cells
    return rows


def test_every_reason_has_a_row() -> None:
    rows = _rows()
    missing = [r.value for r in Reason if r.value not in rows]
    assert missing == [], f"reasons missing from {DOC.name}: {missing}"
    unknown = [name for name in rows if name not in {r.value for r in Reason}]
    assert unknown == [], f"rows for reasons the operator never writes: {unknown}"


def test_every_row_is_complete_and_names_a_real_condition() -> None:
    types = {t.value for t in ConditionType}
    for reason, (condition, _retried, meaning, action) in _rows().items():
        named = {c.strip() for c in condition.replace("any but", "").split(",")}
        assert named <= types | {"Ready"}, reason
        assert meaning and action, reason


def test_the_retried_column_matches_the_operator() -> None:
    for reason, (_, retried, *_rest) in _rows().items():
        if Reason(reason) in PERMANENT_REASONS:
            assert retried == "on change", reason
        elif retried:
            assert retried == "back-off", reason
