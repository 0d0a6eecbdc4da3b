"""``ChatQuota`` in ``ai.chatprovider.dev/v1alpha1``: the single source of its CRD schema.

A ChatQuota lives in the namespace of the ChatProviders it governs, so the providers' owner
decides who may use how much: which providers (by name or label selector), which callers (written
as RBAC subjects are), whether the limits hold per subject, per caller or for all of them
together, and the limits themselves. Semantics (windows, reservation and settlement, the
headers): docs/quotas.md. Conventions as in :mod:`chatprovider.api.v1alpha1`: attribute
docstrings become the schema descriptions, CEL rules sit next to the fields they guard. Run
``python -m chatprovider_tools.generators.crd`` (``make crds``) after changing this module.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from chatprovider.api.v1alpha1 import (
    NAME_PATTERN,
    Condition,
    ObjectName,
    _list_map,
    _Model,
)

__all__ = [
    "QUOTA_KIND",
    "QUOTA_PLURAL",
    "ChatQuota",
    "ChatQuotaSpec",
    "ChatQuotaStatus",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Limits",
    "ProviderSelection",
    "QuotaScope",
    "Subject",
    "SubjectKind",
    "SubjectUsage",
]

QUOTA_KIND = "ChatQuota"
QUOTA_PLURAL = "chatquotas"

#: A DNS-1123 label: the rule for a namespace's name.
_NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: A label key: an optional DNS subdomain prefix and a name (as ``metav1.LabelSelector`` has).
_LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
#: The largest count a limit may name: far beyond any real budget, well inside int64 and the
#: 2^53 that a Lua number (the Redis counter script) holds exactly.
_MAX_COUNT = 10**15

LabelKey = Annotated[str, Field(min_length=1, max_length=317, pattern=_LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, Field(max_length=63, pattern=_LABEL_VALUE_PATTERN)]
Count = Annotated[int, Field(ge=0, le=_MAX_COUNT)]
#: The fields of :class:`Limits`, as the API writes them.
_LIMIT_NAMES = ("requestsPerMinute", "tokensPerMinute", "promptTokensPerMinute",
                "completionTokensPerMinute", "tokensPerDay", "tokensPerMonth",
                "concurrentRequests")


def _rule(rule: str, message: str, field: str | None = None,
          reason: str = "FieldValueInvalid") -> JsonDict:
    out: JsonDict = {"rule": rule, "message": message, "reason": reason}
    if field is not None:
        out["fieldPath"] = f".{field}"
    return out


class LabelSelectorRequirement(_Model):
    """One requirement of a label selector (metav1.LabelSelectorRequirement)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _rule("self.operator in ['Exists', 'DoesNotExist'] ? !has(self.values) ||"
                      " size(self.values) == 0 : has(self.values) && size(self.values) > 0",
                      "values must be set for In and NotIn, and empty for Exists and"
                      " DoesNotExist", "values"),
            ]
        }
    )

    key: LabelKey
    """The label key the requirement applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """In, NotIn, Exists or DoesNotExist."""
    values: list[LabelValue] = Field(default_factory=list, max_length=64,
                                     json_schema_extra={"x-kubernetes-list-type": "set"})
    """The values for In and NotIn; empty for Exists and DoesNotExist."""


class LabelSelector(_Model):
    """A label selector, as Deployments and NetworkPolicies write it (metav1.LabelSelector)."""

    match_labels: dict[str, LabelValue] = Field(
        default_factory=dict,
        json_schema_extra={
            "maxProperties": 64,
            "x-kubernetes-validations": [
                _rule(f"self.all(k, size(k) <= 317 && k.matches(r'{_LABEL_KEY_PATTERN}'))",
                      "matchLabels keys must be label keys (an optional DNS prefix and /, then"
                      " a name of letters, digits, -, _ and .)"),
            ],
        })
    """Labels a provider must carry, each with exactly this value."""
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list,
                                                              max_length=32)
    """Requirements a provider's labels must all meet."""


class ProviderSelection(_Model):
    """Which ChatProviders of the quota's namespace the quota governs: by name, or by label."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _rule("has(self.names) != has(self.selector)",
                      "set exactly one of names or selector", "names", "FieldValueRequired"),
            ]
        }
    )

    names: list[ObjectName] | None = Field(
        default=None, min_length=1, max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "set"})
    """Names of ChatProviders in the quota's namespace."""
    selector: LabelSelector | None = None
    """A label selector over the ChatProviders in the quota's namespace. An empty selector ({})
    selects every provider of the namespace."""


class SubjectKind(StrEnum):
    """The kinds of RBAC subject a quota can name."""

    SERVICE_ACCOUNT = "ServiceAccount"
    USER = "User"
    GROUP = "Group"


class Subject(_Model):
    """A caller, written as in a RoleBinding's subjects. A whole namespace of ServiceAccounts is
    the group system:serviceaccounts:NAMESPACE, all ServiceAccounts system:serviceaccounts, every
    authenticated caller system:authenticated."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _rule("self.kind != 'ServiceAccount' || has(self.namespace)",
                      "namespace is required for a ServiceAccount", "namespace",
                      "FieldValueRequired"),
                _rule("self.kind == 'ServiceAccount' || !has(self.namespace)",
                      "namespace is only allowed for a ServiceAccount (a User or a Group is"
                      " not namespaced)", "namespace", "FieldValueForbidden"),
                _rule("self.kind != 'ServiceAccount' || self.name.matches(r'"
                      + NAME_PATTERN + "')",
                      "name of a ServiceAccount must be a lowercase DNS-1123 subdomain",
                      "name"),
            ]
        }
    )

    kind: SubjectKind
    """ServiceAccount, User or Group."""
    name: str = Field(min_length=1, max_length=253)
    """Name of the ServiceAccount, the user (as the authenticator names it, such as
    alice@example.com) or the group."""
    namespace: str | None = Field(default=None, min_length=1, max_length=63,
                                  pattern=_NAMESPACE_PATTERN)
    """Namespace of the ServiceAccount (for ServiceAccount only)."""


class QuotaScope(StrEnum):
    """Who shares one set of counters."""

    PER_SUBJECT = "PerSubject"
    PER_CALLER = "PerCaller"
    SHARED = "Shared"


class Limits(_Model):
    """The limits; any left out does not apply. Minutes, days and months are fixed calendar
    windows in UTC (a minute starts at second 0, a day at 00:00, a month on its 1st); a
    reservation is charged to the window in which the request was admitted."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _rule(" || ".join(f"has(self.{name})" for name in _LIMIT_NAMES),
                      "set at least one limit (requestsPerMinute, tokensPerMinute, ...)",
                      reason="FieldValueRequired"),
            ]
        }
    )

    requests_per_minute: Count | None = None
    """Requests admitted per minute."""
    tokens_per_minute: Count | None = None
    """Tokens (prompt and completion together) per minute."""
    prompt_tokens_per_minute: Count | None = None
    """Prompt (input) tokens per minute."""
    completion_tokens_per_minute: Count | None = None
    """Completion (output) tokens per minute."""
    tokens_per_day: Count | None = None
    """Tokens (prompt and completion together) per UTC day."""
    tokens_per_month: Count | None = None
    """Tokens (prompt and completion together) per UTC calendar month."""
    concurrent_requests: Count | None = None
    """Requests in flight at once (a streamed answer counts until its end)."""


class ChatQuotaSpec(_Model):
    """Desired state of a ChatQuota: who may use which providers of this namespace, how much."""

    providers: ProviderSelection
    """The ChatProviders governed, in the quota's own namespace."""
    subjects: list[Subject] = Field(min_length=1, max_length=256)
    """The callers the limits apply to. A caller no quota names is not limited by quotas (RBAC
    still decides whether it may use the provider at all)."""
    scope: QuotaScope = QuotaScope.PER_SUBJECT
    """Who shares one set of counters. PerSubject: each entry of subjects has its own (a group
    or a namespace shares one budget among its members; a caller matched by two entries is
    charged on both). PerCaller: each authenticated caller (ServiceAccount or user) has its own.
    Shared: every matched caller draws from one budget."""
    limits: Limits
    """The limits that hold for each set of counters."""


class SubjectUsage(_Model):
    """Consumption of one set of counters in the current windows. Only limited counts are kept,
    so only those are reported."""

    subject: str = Field(min_length=1, max_length=512)
    """Whose counters: ServiceAccount:NAMESPACE/NAME, User:NAME or Group:NAME (PerSubject), the
    caller's user name (PerCaller), or * (Shared)."""
    requests_this_minute: int | None = Field(default=None, ge=0)
    """Requests admitted in the current minute."""
    tokens_this_minute: int | None = Field(default=None, ge=0)
    """Tokens charged in the current minute."""
    prompt_tokens_this_minute: int | None = Field(default=None, ge=0)
    """Prompt tokens charged in the current minute."""
    completion_tokens_this_minute: int | None = Field(default=None, ge=0)
    """Completion tokens charged in the current minute."""
    tokens_today: int | None = Field(default=None, ge=0)
    """Tokens charged in the current UTC day."""
    tokens_this_month: int | None = Field(default=None, ge=0)
    """Tokens charged in the current UTC month."""
    concurrent_requests: int | None = Field(default=None, ge=0)
    """Requests in flight."""
    peak_fraction: float | None = Field(default=None, ge=0)
    """The largest share of a limit used (1 means a limit is reached; more is possible when
    real usage exceeded the reservation). The list is sorted by it."""


class ChatQuotaStatus(_Model):
    """Observed state, written by the operator at a bounded rate."""

    observed_generation: int | None = Field(default=None, ge=0)
    """metadata.generation of the spec last processed."""
    conditions: list[Condition] = Field(
        default_factory=list, max_length=8, json_schema_extra=_list_map("type"))
    """Ready: the quota selects a provider and its counters can be reached; UsageReported:
    usage could be read from the counter store (reasons: docs/quotas.md)."""
    providers: list[str] = Field(default_factory=list, max_length=256)
    """Names of the ChatProviders the quota currently governs."""
    usage: list[SubjectUsage] = Field(default_factory=list, max_length=20)
    """The (at most 20) sets of counters closest to a limit, most used first."""
    usage_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """When this usage was first read (RFC 3339); it does not move while usage stays the
    same."""


class ChatQuota(_Model):
    """Limits on how much callers may use the ChatProviders of a namespace."""

    model_config = ConfigDict(extra="allow")

    api_version: Literal["ai.chatprovider.dev/v1alpha1"] = "ai.chatprovider.dev/v1alpha1"
    """APIVersion defines the versioned schema of this representation of an object. Servers
    should convert recognized schemas to the latest internal value, and may reject unrecognized
    values. More info:
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"""
    kind: Literal["ChatQuota"] = "ChatQuota"
    """Kind is a string value representing the REST resource this object represents. Servers may
    infer this from the endpoint the client submits requests to. Cannot be updated. In
    CamelCase. More info:
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata (name, namespace, labels, annotations, ...)."""
    spec: ChatQuotaSpec
    status: ChatQuotaStatus = Field(default_factory=ChatQuotaStatus)
