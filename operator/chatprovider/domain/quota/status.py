"""A ChatQuota's status as the operator writes it, and whether it is worth a write (pure).

Conditions (type: reasons):

* ``Ready``: ``Ready`` (it selects at least one provider and its counters can be reached, or
  live in relay memory); ``NoProvidersSelected`` (no ChatProvider of its namespace matches
  ``spec.providers``: it governs nothing); ``CounterStoreUnavailable`` (the store does not
  answer: governed requests are refused, fail closed, or relayed uncounted, fail open);
* ``UsageReported``: ``UsageRead``; ``CounterStoreUnavailable`` (``usage`` is the last one
  read); ``CountersInRelayMemory`` (the counters are in the memory of relay processes the
  operator cannot read, so ``usage`` is not reported).

``usageTime`` moves only when ``usage`` changed, so a quota whose usage stays the same writes
nothing: an unchanged status is never applied again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chatprovider.api.quota import ChatQuotaStatus
from chatprovider.domain.conditions import (
    ConditionType,
    DesiredCondition,
    QuotaReason,
    merge_conditions,
)
from chatprovider.domain.quota.limits import Quota, selects
from chatprovider.domain.quota.report import TOP, usage_report
from chatprovider.domain.status import rfc3339

__all__ = ["QUOTA_CONDITIONS", "UsageReading", "governed_providers", "needs_quota_write",
           "quota_status"]

#: The condition types the operator owns on a ChatQuota.
QUOTA_CONDITIONS = (ConditionType.READY, ConditionType.USAGE_REPORTED)


@dataclass(frozen=True)
class UsageReading:
    """What the counter store said for one quota: its counters (``counters``), that it could not
    be reached (``unavailable``: the store's message, which holds no password), or that the
    operator cannot read the counters at all (``unreadable``: why)."""

    counters: Mapping[str, int] | None = None
    unavailable: str | None = None
    unreadable: str | None = None
    fail_open: bool = False
    source: str = "the counter store"
    """Where the counters were read, for the message (``redis://host:6379``)."""


def governed_providers(quota: Quota, providers: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The names of ``providers`` (of the quota's namespace: name to labels) it selects,
    sorted."""
    return sorted(name for name, labels in providers.items()
                  if selects(quota.spec.providers, name, labels))


def _conditions(names: list[str], reading: UsageReading) -> list[DesiredCondition]:
    ready = ConditionType.READY
    usage = ConditionType.USAGE_REPORTED
    if reading.unavailable is not None:
        effect = ("governed requests are relayed uncounted (fail open)" if reading.fail_open
                  else "governed requests are refused with 503 (fail closed)")
        message = f"{reading.unavailable}; {effect}"
        store = DesiredCondition(usage, "False", QuotaReason.COUNTER_STORE_UNAVAILABLE,
                                 f"{reading.unavailable}; usage is the last one read")
        state = DesiredCondition(ready, "False", QuotaReason.COUNTER_STORE_UNAVAILABLE, message)
    elif reading.unreadable is not None:
        store = DesiredCondition(usage, "False", QuotaReason.COUNTERS_IN_RELAY_MEMORY,
                                 reading.unreadable)
        state = DesiredCondition(ready, "True", QuotaReason.READY, "")
    else:
        store = DesiredCondition(usage, "True", QuotaReason.USAGE_READ,
                                 f"usage read from {reading.source}")
        state = DesiredCondition(ready, "True", QuotaReason.READY, "")
    if not names:
        state = DesiredCondition(ready, "False", QuotaReason.NO_PROVIDERS_SELECTED,
                                 "no ChatProvider of this namespace matches spec.providers: "
                                 "the quota governs nothing")
    elif state.status == "True":
        what = "provider" if len(names) == 1 else "providers"
        state = DesiredCondition(ready, "True", QuotaReason.READY,
                                 f"in force for {len(names)} {what}")
    return [state, store]


def quota_status(quota: Quota, generation: int, old: ChatQuotaStatus,
                 providers: Mapping[str, Mapping[str, str]], reading: UsageReading,
                 now: float, top: int = TOP) -> ChatQuotaStatus:
    """The complete status of ``quota`` (what is not in it disappears when it is applied).
    ``old`` is the stored status: condition transition times, and the usage kept while the
    store is unreachable or unchanged, come from it."""
    names = governed_providers(quota, providers)
    usage_time: str | None
    when = rfc3339(dt.datetime.fromtimestamp(now, dt.UTC))
    conditions = merge_conditions(
        [c for c in old.conditions if c.type in QUOTA_CONDITIONS],
        _conditions(names, reading), when, generation)
    if reading.counters is not None:
        usage = usage_report(quota, reading.counters, now, top)
        usage_time = old.usage_time if usage == old.usage and old.usage_time else when
    elif reading.unavailable is not None:
        usage, usage_time = old.usage, old.usage_time
    else:
        usage, usage_time = [], None
    return ChatQuotaStatus(observed_generation=generation, conditions=conditions,
                           providers=names, usage=usage, usage_time=usage_time)


def _said(status: ChatQuotaStatus) -> dict[str, Any]:
    out = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    out["conditions"] = sorted((c for c in out.get("conditions", [])
                                if c["type"] in QUOTA_CONDITIONS), key=lambda c: c["type"])
    return out


def needs_quota_write(old: ChatQuotaStatus, new: ChatQuotaStatus) -> bool:
    """Whether ``new`` says anything ``old`` does not (the operator's fields only)."""
    return _said(old) != _said(new)
