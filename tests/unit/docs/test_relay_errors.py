"""docs/relay.md's table of error answers lists every upstream failure the relay can answer,
under the status it really has."""

from __future__ import annotations

import re
from pathlib import Path

from chatprovider.domain.openai_errors import UpstreamFailure, UpstreamFailureKind

DOC = Path(__file__).resolve().parents[3] / "docs" / "relay.md"


def _codes_by_status() -> dict[int, set[str]]:
    table: dict[int, set[str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"^\| (\d{3}) \| ([^|]*) \|", line):
            table[int(match.group(1))] = set(re.findall(r"`(\w+)`", match.group(2)))
    return table


def test_every_upstream_failure_is_in_the_error_table() -> None:
    table = _codes_by_status()
    assert table, f"no error table found in {DOC.name}"
    missing = []
    for kind in UpstreamFailureKind:
        status = UpstreamFailure(kind, "ns/p").status
        if kind.value not in table.get(status, set()):
            missing.append(f"{status} {kind.value}")
    assert missing == [], f"missing from the error table of {DOC.name}: {missing}"
