"""``chatprovider usage``: consumption against limits, one row per quota, subject and limit
(pure; the command reads the ChatQuotas and prints these rows).

Rows come from each quota's ``status.usage`` (what the operator last read from the counter
store, at ``status.usageTime``) and its ``spec.limits``. A quota without usage gets one row
per limit with the subject ``-`` and nothing used, so every quota is listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from chatprovider.api.quota import ChatQuota, Limits
from chatprovider.domain.quota.report import CAPS

__all__ = ["NO_SUBJECT", "UsageRow", "quota_notes", "table", "usage_rows"]

NO_SUBJECT = "-"
_HEADERS = ("NAMESPACE", "QUOTA", "SUBJECT", "LIMIT", "USED", "MAX", "USE")


@dataclass(frozen=True)
class UsageRow:
    namespace: str
    quota: str
    subject: str
    limit: str
    """The limit as spec.limits names it (tokensPerMinute, ...)."""
    used: int | None
    """None: not reported (no usage read yet, or the counters cannot be read)."""
    max: int
    usage_time: str | None

    @property
    def fraction(self) -> float | None:
        if self.used is None:
            return None
        return self.used / self.max if self.max else (0.0 if self.used == 0 else 1.0)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["fraction"] = None if self.fraction is None else round(self.fraction, 4)
        return out


def _alias(attribute: str) -> str:
    return str(Limits.model_fields[attribute].alias or attribute)


def usage_rows(quotas: Iterable[ChatQuota]) -> list[UsageRow]:
    """Every quota's rows, sorted by namespace and name, each quota's subjects most used first
    (the order of ``status.usage``)."""
    rows: list[UsageRow] = []
    for q in sorted(quotas, key=lambda q: (str(q.metadata.get("namespace", "")),
                                           str(q.metadata.get("name", "")))):
        ns, name = str(q.metadata.get("namespace", "")), str(q.metadata.get("name", ""))
        limits = [(field, attribute, getattr(q.spec.limits, attribute))
                  for field, attribute in CAPS.items()]
        limits = [(f, a, cap) for f, a, cap in limits if cap is not None]
        when = q.status.usage_time
        if not q.status.usage:
            rows += [UsageRow(ns, name, NO_SUBJECT, _alias(a), None, cap, when)
                     for _, a, cap in limits]
        for entry in q.status.usage:
            rows += [UsageRow(ns, name, entry.subject, _alias(a), getattr(entry, f) or 0, cap,
                              when) for f, a, cap in limits]
    return rows


def quota_notes(quotas: Iterable[ChatQuota]) -> list[str]:
    """One line for each quota that is not Ready or whose usage is not reported."""
    notes = []
    for q in quotas:
        where = f"{q.metadata.get('namespace', '')}/{q.metadata.get('name', '')}"
        by_type = {c.type: c for c in q.status.conditions}
        if not by_type:
            notes.append(f"{where}: no status yet (is the operator running?)")
            continue
        for kind in ("Ready", "UsageReported"):
            cond = by_type.get(kind)
            if cond is not None and cond.status != "True":
                notes.append(f"{where}: {kind} {cond.status} ({cond.reason}): {cond.message}")
    return notes


def _percent(row: UsageRow) -> str:
    fraction = row.fraction
    return "-" if fraction is None else f"{fraction * 100:.0f}%"


def table(rows: Iterable[UsageRow], *, namespaces: bool) -> str:
    """The rows as ``kubectl get`` prints a table (the NAMESPACE column with ``namespaces``)."""
    cells = [list(_HEADERS)] + [
        [r.namespace, r.quota, r.subject, r.limit, "-" if r.used is None else str(r.used),
         str(r.max), _percent(r)] for r in rows]
    if not namespaces:
        cells = [c[1:] for c in cells]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    return "\n".join("   ".join(c[i].ljust(widths[i]) for i in range(len(c))).rstrip()
                     for c in cells) + "\n"
