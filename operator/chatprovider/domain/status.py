"""Building the status a check implies, deciding whether it is worth a write, and which Events
its transitions deserve. Pure: typed statuses in, typed statuses out.

What decides a write is what the status *says* (conditions, models, endpoints, the key version):
measurements (``lastCheck``: when, and how long the calls took) never cause one on their own, so
a periodic re-check that finds nothing new writes nothing. ``lastCheck`` is refreshed with every
change, and at most every ``heartbeat`` seconds otherwise (a bound that can be 0: never).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any, Literal

from chatprovider.api.v1alpha1 import (
    ChatProviderStatus,
    Condition,
    DiscoveredModel,
    EndpointStatus,
    LastCheck,
)
from chatprovider.domain.conditions import ConditionType, merge_conditions
from chatprovider.domain.probe import Assessment

__all__ = ["EventSpec", "StatusInputs", "build_status", "needs_write", "ready_condition",
           "rfc3339", "rfc3339_micro", "transitions"]

_MAX_NAMES_IN_EVENT = 10


def rfc3339(when: dt.datetime) -> str:
    """``when`` as Kubernetes writes times (seconds, UTC, ``Z``)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(when: dt.datetime) -> str:
    """``when`` to the microsecond (UTC, ``Z``; Kubernetes' MicroTime): ``lastCheck.time``,
    which tells one check from the next (two checks within a second must not look alike, or a
    refresh that was asked for would write an identical status, and no one would see it)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


@dataclass(frozen=True)
class StatusInputs:
    generation: int
    now: dt.datetime
    chat_completions_url: str | None
    models_url: str | None
    credential_version: str | None
    latency_ms: int | None
    verification_latency_ms: int | None


def build_status(old: ChatProviderStatus, assessment: Assessment, inputs: StatusInputs
                 ) -> ChatProviderStatus:
    """The complete new status (what is not in it disappears when it is applied)."""
    now = rfc3339(inputs.now)
    models = [DiscoveredModel(id=m.id, source="static" if m.source == "static" else "discovered",
                              owned_by=m.owned_by)
              for m in assessment.models]
    endpoints = None
    if inputs.chat_completions_url:
        endpoints = EndpointStatus(chat_completions=inputs.chat_completions_url,
                                   models=inputs.models_url)
    return ChatProviderStatus(
        observed_generation=inputs.generation,
        conditions=merge_conditions(old.conditions, assessment.conditions, now,
                                    inputs.generation),
        endpoints=endpoints,
        models=models,
        model_count=len(models),
        apis=[op.value for op in assessment.apis],
        last_check=LastCheck(time=rfc3339_micro(inputs.now), latency_ms=inputs.latency_ms,
                             verification_latency_ms=inputs.verification_latency_ms),
        credential_version=inputs.credential_version,
    )


def _said(status: ChatProviderStatus) -> dict[str, Any]:
    """What a status says, without its measurements and transition times."""
    said = status.model_dump(exclude={"last_check"}, exclude_none=True)
    said["conditions"] = sorted(
        ({k: v for k, v in c.items() if k != "last_transition_time"}
         for c in said.get("conditions") or []),
        key=lambda c: str(c["type"]))
    return said


def needs_write(old: ChatProviderStatus, new: ChatProviderStatus, *, heartbeat: float,
                now: dt.datetime) -> bool:
    """Write when the status says something new, or (``heartbeat`` > 0) when the stored
    ``lastCheck`` is older than ``heartbeat`` seconds."""
    if _said(old) != _said(new):
        return True
    if heartbeat <= 0:
        return False
    last = _parse_time(old.last_check.time if old.last_check else None)
    return last is None or (now - last).total_seconds() >= heartbeat


@dataclass(frozen=True)
class EventSpec:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def ready_condition(status: ChatProviderStatus) -> Condition | None:
    """The ``Ready`` condition of ``status``, if any."""
    return next((c for c in status.conditions if c.type == ConditionType.READY), None)


def _names(ids: list[str]) -> str:
    shown = ", ".join(ids[:_MAX_NAMES_IN_EVENT])
    more = len(ids) - _MAX_NAMES_IN_EVENT
    return shown + (f" and {more} more" if more > 0 else "")


def transitions(old: ChatProviderStatus, new: ChatProviderStatus) -> list[EventSpec]:
    """Events for what changed between two statuses; nothing when nothing changed.

    Readiness: ``BecameReady``, ``BecameUnready``, or ``NotReady`` when the reason changes while
    not Ready. The models offered (``status.models``): a readiness Event names the models that
    came or went with it (the first Ready: "2 models offered; models added: a, b"), and
    ``ModelsAdded`` / ``ModelsRemoved`` say when the list gains or loses ids without a change of
    readiness; so each change is one Event (at 10,000 providers, a write less each). The key:
    ``CredentialRotated`` when the Secret's version in use changes."""
    events: list[EventSpec] = []
    old_ids = {m.id for m in old.models}
    new_ids = {m.id for m in new.models}
    added, removed = sorted(new_ids - old_ids), sorted(old_ids - new_ids)
    readiness = _readiness(old, new)
    if readiness is not None:
        said = [f"models added: {_names(added)}"] if added else []
        said += [f"models removed: {_names(removed)}"] if removed else []
        events.append(replace(readiness, message="; ".join([readiness.message, *said])))
    else:
        if added:
            events.append(EventSpec("Normal", "ModelsAdded", _names(added)))
        if removed:
            events.append(EventSpec("Normal", "ModelsRemoved", _names(removed)))
    old_cred, new_cred = old.credential_version, new.credential_version
    if old_cred and new_cred and old_cred != new_cred:
        events.append(EventSpec("Normal", "CredentialRotated",
                                f"now using API key version {new_cred}"))
    return events


def _readiness(old: ChatProviderStatus, new: ChatProviderStatus) -> EventSpec | None:
    """The Event of a change of readiness (or of the reason while not Ready), if any."""
    before, after = ready_condition(old), ready_condition(new)
    if after is None:
        return None
    was = before.status if before else None
    if after.status == "True" and was != "True":
        return EventSpec("Normal", "BecameReady", after.message)
    if after.status != "True" and (
            was == "True" or (before.reason if before else None) != after.reason):
        return EventSpec("Warning", "BecameUnready" if was == "True" else "NotReady",
                         f"{after.reason}: {after.message}")
    return None
