"""Standard status conditions: types, reasons, and keeping ``lastTransitionTime`` stable.

Condition types (``Ready`` summarises the others, in this order of precedence):

=================== ============================================================================
SecretResolved      the API key Secret (and CA bundle) the spec references could be read
EndpointReachable   a connection was made and the server answered (not 5xx)
Authenticated       the server accepted the key (401/403 make it False)
ModelsDiscovered    the provider offers at least one model (discovered or static)
Verified            the test message got a chat completion (Unknown when verification is off)
=================== ============================================================================

A ChatQuota has ``Ready`` (it selects a provider, and its counters can be reached) and
``UsageReported`` (``status.usage`` could be read), with the reasons of :class:`QuotaReason`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from chatprovider.api.v1alpha1 import Condition

__all__ = [
    "ConditionStatus",
    "ConditionType",
    "DesiredCondition",
    "ModelReason",
    "QuotaReason",
    "Reason",
    "merge_conditions",
    "summarize_ready",
]

ConditionStatus = Literal["True", "False", "Unknown"]


class ConditionType(StrEnum):
    READY = "Ready"
    SECRET_RESOLVED = "SecretResolved"
    ENDPOINT_REACHABLE = "EndpointReachable"
    AUTHENTICATED = "Authenticated"
    MODELS_DISCOVERED = "ModelsDiscovered"
    VERIFIED = "Verified"
    USAGE_REPORTED = "UsageReported"
    """A ChatQuota's: whether its ``status.usage`` could be read from the counter store."""


#: Precedence for the Ready summary: the first False detail condition gives Ready its reason.
DETAIL_ORDER: tuple[ConditionType, ...] = (
    ConditionType.SECRET_RESOLVED,
    ConditionType.ENDPOINT_REACHABLE,
    ConditionType.AUTHENTICATED,
    ConditionType.MODELS_DISCOVERED,
    ConditionType.VERIFIED,
)


class Reason(StrEnum):
    """Every reason the operator writes. Stable: tools and runbooks match on them."""

    READY = "Ready"
    NOT_CHECKED = "NotChecked"
    # SecretResolved
    SECRET_RESOLVED = "SecretResolved"
    NO_SECRET_REQUIRED = "NoSecretRequired"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_KEY_MISSING = "SecretKeyMissing"
    SECRET_KEY_EMPTY = "SecretKeyEmpty"
    SECRET_FORBIDDEN = "SecretForbidden"
    CA_BUNDLE_NOT_FOUND = "CABundleNotFound"
    CA_BUNDLE_KEY_MISSING = "CABundleKeyMissing"
    CA_BUNDLE_INVALID = "CABundleInvalid"
    # EndpointReachable
    REACHABLE = "Reachable"
    INVALID_ENDPOINT = "InvalidEndpoint"
    EGRESS_DENIED = "EgressDenied"
    DNS_FAILURE = "DNSFailure"
    CONNECTION_REFUSED = "ConnectionRefused"
    CONNECTION_FAILED = "ConnectionFailed"
    TLS_UNKNOWN_AUTHORITY = "TLSUnknownAuthority"
    TLS_HOSTNAME_MISMATCH = "TLSHostnameMismatch"
    TLS_ERROR = "TLSError"
    TIMEOUT = "Timeout"
    PROXY_ERROR = "ProxyError"
    REDIRECT_REFUSED = "RedirectRefused"
    UPSTREAM_SERVER_ERROR = "UpstreamServerError"
    RATE_LIMITED = "RateLimited"
    # Authenticated
    AUTHENTICATED = "Authenticated"
    UNAUTHORIZED = "Unauthorized"
    FORBIDDEN = "Forbidden"
    NOT_VERIFIABLE = "NotVerifiable"
    # ModelsDiscovered
    MODELS_DISCOVERED = "ModelsDiscovered"
    STATIC_MODELS = "StaticModels"
    MODELS_ROUTE_NOT_OFFERED = "ModelsRouteNotOffered"
    INVALID_MODELS_RESPONSE = "InvalidModelsResponse"
    UNEXPECTED_STATUS = "UnexpectedStatus"
    NO_MODELS = "NoModels"
    # Verified
    VERIFIED = "Verified"
    VERIFICATION_DISABLED = "VerificationDisabled"
    VERIFICATION_FAILED = "VerificationFailed"


class QuotaReason(StrEnum):
    """Every reason the operator writes on a ChatQuota (docs/quotas.md lists them)."""

    READY = "Ready"
    NO_PROVIDERS_SELECTED = "NoProvidersSelected"
    COUNTER_STORE_UNAVAILABLE = "CounterStoreUnavailable"
    USAGE_READ = "UsageRead"
    COUNTERS_IN_RELAY_MEMORY = "CountersInRelayMemory"


class ModelReason(StrEnum):
    """Every reason the operator writes on a ChatModel (docs/relay.md, "Virtual models")."""

    BACKENDS_USABLE = "BackendsUsable"
    SOME_BACKENDS_USABLE = "SomeBackendsUsable"
    NO_BACKEND_USABLE = "NoBackendUsable"


@dataclass(frozen=True)
class DesiredCondition:
    """A condition as computed from a probe, before timestamps are attached."""

    type: ConditionType
    status: ConditionStatus
    reason: Reason | QuotaReason | ModelReason
    message: str


def summarize_ready(details: Sequence[DesiredCondition], ready_message: str) -> DesiredCondition:
    """Ready is True when no detail condition is False; else it carries the first False one."""
    by_type = {c.type: c for c in details}
    for t in DETAIL_ORDER:
        cond = by_type.get(t)
        if cond is not None and cond.status == "False":
            return DesiredCondition(ConditionType.READY, "False", cond.reason, cond.message)
    return DesiredCondition(ConditionType.READY, "True", Reason.READY, ready_message)


def merge_conditions(
    current: Iterable[Condition],
    desired: Iterable[DesiredCondition],
    now: str,
    generation: int,
) -> list[Condition]:
    """The desired conditions as status conditions, as ``meta.SetStatusCondition`` does:
    ``lastTransitionTime`` is kept while a condition's status is unchanged.

    Only the operator's own condition types are returned: the status is server-side applied, so
    conditions of other types (another manager's) are left as they are by the API server.
    """
    since = {c.type: c.last_transition_time for c in current}
    previous = {c.type: c.status for c in current}
    return [
        Condition(type=str(cond.type), status=cond.status, reason=str(cond.reason),
                  message=cond.message, observed_generation=generation,
                  last_transition_time=since[cond.type] if previous.get(cond.type) == cond.status
                  else now)
        for cond in desired
    ]
