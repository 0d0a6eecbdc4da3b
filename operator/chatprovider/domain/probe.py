"""What one check of a provider found, and the conditions, models and retry policy it implies.

The prober (I/O) fills a :class:`ProbeResult`; :func:`assess` turns it into status. Failures are
sorted by what the operator should do next (one boundary for retry semantics):

- ``Retry.PERMANENT``: the spec or a referenced object must change (bad key, missing Secret,
  invalid URL, refused by the egress policy, TLS misconfiguration). No fast retries; the next
  check comes from a change, a refresh annotation or the normal interval.
- ``Retry.TRANSIENT``: the server may recover by itself (refused, DNS, timeout, 5xx, 429):
  re-check with exponential back-off, capped by the interval.
- ``Retry.NONE``: healthy; re-check at the interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from chatprovider.domain.apis import Operation, offered_by
from chatprovider.domain.conditions import (
    ConditionStatus,
    ConditionType,
    DesiredCondition,
    Reason,
    summarize_ready,
)
from chatprovider.domain.discovery import ModelEntry, offered_models

__all__ = ["MODELS_ROUTE", "Assessment", "CallOutcome", "ProbeResult", "Retry", "assess",
           "worth_verifying"]


class Retry(Enum):
    NONE = "none"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


PERMANENT_REASONS = frozenset({
    Reason.INVALID_ENDPOINT, Reason.EGRESS_DENIED, Reason.SECRET_NOT_FOUND,
    Reason.SECRET_KEY_MISSING, Reason.SECRET_KEY_EMPTY, Reason.SECRET_FORBIDDEN,
    Reason.CA_BUNDLE_NOT_FOUND, Reason.CA_BUNDLE_KEY_MISSING, Reason.CA_BUNDLE_INVALID,
    Reason.TLS_UNKNOWN_AUTHORITY, Reason.TLS_HOSTNAME_MISMATCH, Reason.UNAUTHORIZED,
    Reason.FORBIDDEN, Reason.MODELS_ROUTE_NOT_OFFERED, Reason.NO_MODELS, Reason.REDIRECT_REFUSED,
})


MODELS_ROUTE = "GET /v1/models"


@dataclass(frozen=True)
class CallOutcome:
    """One HTTP call: either a transport failure (``failure`` set) or an HTTP status."""

    failure: Reason | None = None
    detail: str = ""  # a short, key-free explanation (exception class, status line)
    status: int | None = None
    latency_ms: int | None = None
    models: tuple[ModelEntry, ...] | None = None  # a parsed model list (models call)
    shape_error: str | None = None  # the body was not the expected OpenAI shape


@dataclass(frozen=True)
class ProbeResult:
    """Everything one check observed. Built by the prober; contains no secret values."""

    references: tuple[Reason, str] = (Reason.NO_SECRET_REQUIRED, "no API key configured")
    endpoint_error: str | None = None  # InvalidEndpoint message
    models_call: CallOutcome | None = None  # None when discovery is disabled
    models_route: str = MODELS_ROUTE  # or the server type's fallback, when it answered instead
    api_answers: tuple[tuple[Operation, int | None], ...] = ()  # each probed API's status
    verify_call: CallOutcome | None = None  # None when verification is disabled or skipped
    verification: bool = False  # a test message was asked for (sent or skipped)
    static_models: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class Assessment:
    conditions: list[DesiredCondition]
    models: list[ModelEntry] = field(default_factory=list)
    retry: Retry = Retry.NONE
    apis: tuple[Operation, ...] = ()
    """The operations the server answers (chat completions first); empty: not probed."""

    @property
    def ready(self) -> DesiredCondition:
        return next(c for c in self.conditions if c.type is ConditionType.READY)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _c(t: ConditionType, ok: bool | None, reason: Reason, message: str) -> DesiredCondition:
    status: ConditionStatus = "Unknown" if ok is None else ("True" if ok else "False")
    return DesiredCondition(t, status, reason, message)


def _http_failure(call: CallOutcome, what: str) -> tuple[ConditionType, Reason, str] | None:
    """Map a call's outcome to the condition it breaks, or None when it broke none."""
    if call.failure is not None:
        return ConditionType.ENDPOINT_REACHABLE, call.failure, f"{what}: {call.detail}"
    status = call.status or 0
    if status in (401, 403):
        reason = Reason.UNAUTHORIZED if status == 401 else Reason.FORBIDDEN
        return ConditionType.AUTHENTICATED, reason, f"{what} answered {status}: check the API key"
    if status == 429:
        return ConditionType.ENDPOINT_REACHABLE, Reason.RATE_LIMITED, f"{what} answered 429"
    if status >= 500:
        return (ConditionType.ENDPOINT_REACHABLE, Reason.UPSTREAM_SERVER_ERROR,
                f"{what} answered {status}")
    return None


def worth_verifying(models_call: CallOutcome | None) -> bool:
    """Whether to send the test message after ``GET /v1/models``: not once the server could not
    be reached or refused the key (401/403), which the message cannot change and which would
    only send a refused key, and a chat request, once more."""
    if models_call is None:  # discovery disabled: the test message is the only check
        return True
    return models_call.failure is None and models_call.status not in (401, 403)


def assess(result: ProbeResult) -> Assessment:  # noqa: C901 - a flat decision table
    """Conditions (with Ready), offered models and retry policy for one probe result."""
    ref_reason, ref_message = result.references
    refs_ok = ref_reason in (Reason.SECRET_RESOLVED, Reason.NO_SECRET_REQUIRED)
    conds: dict[ConditionType, DesiredCondition] = {
        ConditionType.SECRET_RESOLVED: _c(ConditionType.SECRET_RESOLVED, refs_ok, ref_reason,
                                          ref_message),
    }
    not_checked = "not checked: an earlier step failed"
    for t in DETAIL_ORDER_AFTER_SECRET:
        conds[t] = _c(t, None, Reason.NOT_CHECKED, not_checked)
    models: list[ModelEntry] = []

    if result.endpoint_error is not None:
        conds[ConditionType.ENDPOINT_REACHABLE] = _c(
            ConditionType.ENDPOINT_REACHABLE, False, Reason.INVALID_ENDPOINT, result.endpoint_error)
    elif refs_ok:
        models = _assess_models(result, conds)
        _assess_verification(result, conds)
    details = [conds[t] for t in (ConditionType.SECRET_RESOLVED, *DETAIL_ORDER_AFTER_SECRET)]
    ready = summarize_ready(details, f"{_count(len(models), 'model')} offered")
    retry = Retry.NONE
    if ready.status == "False":
        retry = Retry.PERMANENT if ready.reason in PERMANENT_REASONS else Retry.TRANSIENT
    apis = (Operation.CHAT, *(op for op, status in result.api_answers if offered_by(status))
            ) if result.api_answers else ()
    return Assessment([ready, *details], models, retry, apis)


DETAIL_ORDER_AFTER_SECRET = (
    ConditionType.ENDPOINT_REACHABLE,
    ConditionType.AUTHENTICATED,
    ConditionType.MODELS_DISCOVERED,
    ConditionType.VERIFIED,
)


def _assess_models(
    result: ProbeResult, conds: dict[ConditionType, DesiredCondition]
) -> list[ModelEntry]:
    call = result.models_call
    static, allow = result.static_models, result.allow
    md = ConditionType.MODELS_DISCOVERED
    if call is None:  # discovery disabled
        models = offered_models((), static, allow)
        conds[md] = (_c(md, True, Reason.STATIC_MODELS,
                        f"discovery disabled; {_count(len(models), 'static model')}")
                     if models else
                     _c(md, False, Reason.NO_MODELS, "discovery is disabled and "
                        "spec.models.static offers no model"))
        return models
    route = result.models_route
    broken = _http_failure(call, route)
    if broken is not None:
        t, reason, message = broken
        conds[t] = _c(t, False, reason, message)
        if t is ConditionType.AUTHENTICATED:
            conds[ConditionType.ENDPOINT_REACHABLE] = _c(
                ConditionType.ENDPOINT_REACHABLE, True, Reason.REACHABLE, "the server answered")
        return []
    conds[ConditionType.ENDPOINT_REACHABLE] = _c(
        ConditionType.ENDPOINT_REACHABLE, True, Reason.REACHABLE,
        "the server answered")
    status = call.status or 0
    if status in (404, 405):
        models = offered_models((), static, allow)
        conds[ConditionType.AUTHENTICATED] = _c(
            ConditionType.AUTHENTICATED, None, Reason.NOT_VERIFIABLE,
            "the server does not offer GET /v1/models; enable verification to check the key")
        conds[md] = (_c(md, True, Reason.STATIC_MODELS,
                        f"GET /v1/models answered {status}; using "
                        f"{_count(len(models), 'static model')}")
                     if models else
                     _c(md, False, Reason.MODELS_ROUTE_NOT_OFFERED,
                        f"GET /v1/models answered {status} and spec.models.static is empty: "
                        "list the server's models in spec.models.static"))
        return models
    conds[ConditionType.AUTHENTICATED] = _c(
        ConditionType.AUTHENTICATED, True, Reason.AUTHENTICATED, "the server accepted the request")
    if not 200 <= status < 300:
        conds[md] = _c(md, False, Reason.UNEXPECTED_STATUS, f"{route} answered {status}")
        return []
    if call.models is None:
        conds[md] = _c(md, False, Reason.INVALID_MODELS_RESPONSE,
                       f"{route}: {call.shape_error or 'not an OpenAI model list'}")
        return []
    models = offered_models(call.models, static, allow)
    if not models:
        why = " after spec.models.allow" if allow else ""
        conds[md] = _c(md, False, Reason.NO_MODELS, f"no models offered{why}")
    else:
        conds[md] = _c(md, True, Reason.MODELS_DISCOVERED,
                       f"{_count(len(models), 'model')} offered ({len(call.models)} discovered"
                       + ("" if route == MODELS_ROUTE else f" through {route}") + ")")
    return models


def _assess_verification(result: ProbeResult, conds: dict[ConditionType, DesiredCondition]
                         ) -> None:
    v = ConditionType.VERIFIED
    call = result.verify_call
    if call is None and not result.verification:
        conds[v] = _c(v, None, Reason.VERIFICATION_DISABLED, "verification is disabled")
        return
    if call is None or conds[ConditionType.ENDPOINT_REACHABLE].status == "False" or \
            conds[ConditionType.AUTHENTICATED].status == "False":
        return  # already explained (the message was not sent); Verified stays NotChecked
    broken = _http_failure(call, "test message")
    if broken is not None:
        t, reason, message = broken
        conds[t] = _c(t, False, reason, message)
        conds[v] = _c(v, False, Reason.VERIFICATION_FAILED, message)
        return
    conds[ConditionType.ENDPOINT_REACHABLE] = _c(
        ConditionType.ENDPOINT_REACHABLE, True, Reason.REACHABLE, "the server answered")
    if call.status is not None and 200 <= call.status < 300 and call.shape_error is None:
        if conds[ConditionType.AUTHENTICATED].status != "True":
            conds[ConditionType.AUTHENTICATED] = _c(
                ConditionType.AUTHENTICATED, True, Reason.AUTHENTICATED,
                "the test message was accepted")
        conds[v] = _c(v, True, Reason.VERIFIED, "the test message was answered")
    else:
        why = call.shape_error or f"answered {call.status}"
        conds[v] = _c(v, False, Reason.VERIFICATION_FAILED, f"test message: {why}")
