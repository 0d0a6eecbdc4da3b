"""dashboards/chatprovider-relay.json only queries metrics (and labels) the relay exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.metrics_core import Metric

from chatprovider.relay.metrics import RelayMetrics

DASHBOARD = Path(__file__).resolve().parents[3] / "dashboards" / "chatprovider-relay.json"
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
            "histogram": ("_bucket", "_sum", "_count", "_created")}
IDENT = r"[a-zA-Z_:][a-zA-Z0-9_:]*"


def exported() -> dict[str, set[str]]:
    """Every series name the relay can export, with its label names."""
    metrics = RelayMetrics()
    out: dict[str, set[str]] = {}
    for collector in list(metrics.registry._collector_to_names):  # noqa: SLF001
        labels = set(getattr(collector, "_labelnames", ()))
        for family in collector.describe():
            assert isinstance(family, Metric)
            for suffix in SUFFIXES[family.type]:
                out[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


def expressions(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def test_the_dashboard_is_valid_grafana_json() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert board["uid"] == "chatprovider-relay" and board["panels"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert variables == {"datasource", "namespace", "provider"}


def test_every_expression_uses_exported_metrics_and_labels() -> None:
    series = exported()
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = list(expressions(board))
    assert len(exprs) >= 15
    used = set()
    for expr in exprs:
        names = re.findall(r"\b(chatprovider_[a-zA-Z0-9_:]*)", expr)
        assert names, f"no relay metric in {expr!r}"
        for name in names:
            assert name in series, f"{name} is not exported by the relay ({expr!r})"
            used.add(name)
        # Every selector {label=...} and grouping by (...) names a label of the metrics used.
        labels = set().union(*(series[n] for n in names))
        for matchers in re.findall(r"\{([^}]*)\}", expr):
            for label in re.findall(rf"({IDENT})\s*(?:=~|!~|!=|=)", matchers):
                assert label in labels, f"label {label} in {expr!r}"
        for grouping in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            for label in filter(None, (x.strip() for x in grouping.split(","))):
                assert label in labels, f"label {label} in {expr!r}"
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in used}
    assert families == {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in series}, \
        "every relay metric has a panel"
