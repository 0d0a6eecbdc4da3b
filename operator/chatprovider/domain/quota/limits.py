"""Which limits hold for one request: the quotas that govern a (caller, provider) pair (pure).

A :class:`Quota` is a ChatQuota as the relay holds it; :func:`applicable_limits` turns the
quotas that select the provider and name the caller into :class:`Limit` values, one per limited
count and set of counters. Each limit names its counter with :meth:`Limit.key`, which holds the
window's start: a new window is a new counter, and the old one expires with its window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import quote

from chatprovider.api.quota import ChatQuota, ChatQuotaSpec, LabelSelector, ProviderSelection
from chatprovider.domain.quota.subjects import CallerIdentity, counter_subjects
from chatprovider.domain.quota.windows import Window, window_end, window_start
from chatprovider.domain.routing import ProviderRef

__all__ = ["LIMIT_FIELDS", "Limit", "Metric", "Quota", "applicable_limits", "quota_prefix",
           "selects"]


class Metric(StrEnum):
    """What a counter counts."""

    REQUESTS = "requests"
    TOKENS = "tokens"
    PROMPT_TOKENS = "prompt_tokens"
    COMPLETION_TOKENS = "completion_tokens"
    CONCURRENT = "concurrent"
    """Requests in flight: a set of leases rather than a windowed count."""


#: Each attribute of :class:`~chatprovider.api.quota.Limits`: what it counts, over which window
#: (None: in flight, no window).
LIMIT_FIELDS: Mapping[str, tuple[Metric, Window | None]] = {
    "requests_per_minute": (Metric.REQUESTS, Window.MINUTE),
    "tokens_per_minute": (Metric.TOKENS, Window.MINUTE),
    "prompt_tokens_per_minute": (Metric.PROMPT_TOKENS, Window.MINUTE),
    "completion_tokens_per_minute": (Metric.COMPLETION_TOKENS, Window.MINUTE),
    "tokens_per_day": (Metric.TOKENS, Window.DAY),
    "tokens_per_month": (Metric.TOKENS, Window.MONTH),
    "concurrent_requests": (Metric.CONCURRENT, None),
}


@dataclass(frozen=True, slots=True)
class Quota:
    """A ChatQuota: where it lives and what it says."""

    namespace: str
    name: str
    spec: ChatQuotaSpec

    @classmethod
    def of(cls, resource: ChatQuota) -> Quota:
        return cls(str(resource.metadata.get("namespace", "")),
                   str(resource.metadata.get("name", "")), resource.spec)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Limit:
    """One limited count of one set of counters of a quota."""

    quota: str
    """The quota, NAMESPACE/NAME."""
    subject: str
    """Whose counters (see :func:`~chatprovider.domain.quota.subjects.counter_subjects`)."""
    metric: Metric
    window: Window | None
    capacity: int
    _head: str = field(init=False, repr=False, compare=False)
    """The key without its window, computed once."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_head", f"{quota_prefix(self.quota)}"
                           f"{quote(self.subject, safe=':/@.-_*')}|{self.metric.value}")

    @property
    def budget(self) -> bool:
        """Whether this is a day or month budget (refused as ``insufficient_quota``) rather than
        a rate (``rate_limit_exceeded``)."""
        return self.window in (Window.DAY, Window.MONTH)

    @property
    def prefix(self) -> str:
        """The start of every key of this quota's counters."""
        return quota_prefix(self.quota)

    def key(self, now: float) -> str:
        """The counter's key in the window ``now`` falls in. Subject names are %-escaped, so
        that no two counters share a key."""
        if self.window is None:
            return self._head
        return f"{self._head}|{self.window.value}:{window_start(self.window, now)}"

    def resets_at(self, now: float) -> float | None:
        """When the window ``now`` falls in ends (None for the concurrency limit)."""
        return None if self.window is None else float(window_end(self.window, now))

    def describe(self) -> str:
        """``tokens per minute``, ``requests in flight``, ..."""
        what = self.metric.value.replace("_", " ")
        if self.window is None:
            return "requests in flight"
        return f"{what} per {self.window.value}"


def quota_prefix(quota: str) -> str:
    """The start of every counter key of the quota NAMESPACE/NAME."""
    return f"{quota}|"


def _selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
        if req.operator == "In" and labels.get(req.key) not in req.values:
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
    return True


def selects(selection: ProviderSelection, name: str, labels: Mapping[str, str]) -> bool:
    """Whether ``selection`` picks the provider ``name`` with ``labels`` (same namespace)."""
    if selection.names is not None:
        return name in selection.names
    return selection.selector is not None and _selector_matches(selection.selector, labels)


def applicable_limits(quotas: Iterable[Quota], caller: CallerIdentity, provider: ProviderRef,
                      labels: Mapping[str, str]) -> list[Limit]:
    """Every limit a request of ``caller`` to ``provider`` (carrying ``labels``) is held to: of
    each quota in the provider's namespace that selects it and names the caller. Empty: the
    request is not governed by any quota."""
    limits: list[Limit] = []
    for quota in quotas:
        if quota.namespace != provider.namespace or not selects(
                quota.spec.providers, provider.name, labels):
            continue
        subjects = list(counter_subjects(quota.spec.scope, quota.spec.subjects, caller))
        for attribute, (metric, window) in LIMIT_FIELDS.items():
            capacity = getattr(quota.spec.limits, attribute)
            if capacity is None:
                continue
            limits += [Limit(str(quota), subject, metric, window, capacity)
                       for subject in subjects]
    return limits
