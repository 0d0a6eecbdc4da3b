"""Building the status a check implies, deciding whether it is worth a write, and which Events
its transitions deserve. Pure: dictionaries in, dictionaries out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from chatprovider.domain.conditions import merge_conditions
from chatprovider.domain.probe import Assessment

__all__ = ["EventSpec", "StatusInputs", "build_status", "needs_write", "transitions"]

_MAX_NAMES_IN_EVENT = 10


@dataclass(frozen=True)
class StatusInputs:
    generation: int
    now: str
    chat_completions_url: str | None
    models_url: str | None
    credential_version: str | None
    latency_ms: int | None
    verification_latency_ms: int | None


def build_status(old: Mapping[str, Any], assessment: Assessment, inputs: StatusInputs
                 ) -> dict[str, Any]:
    """The complete new ``.status`` (every key present; None removes a field in a merge patch)."""
    models = [
        {k: v for k, v in (("id", m.id), ("source", m.source), ("ownedBy", m.owned_by)) if v}
        for m in assessment.models
    ]
    endpoints = None
    if inputs.chat_completions_url:
        endpoints = {"chatCompletions": inputs.chat_completions_url, "models": inputs.models_url}
    last_check = {"time": inputs.now, "latencyMs": inputs.latency_ms,
                  "verificationLatencyMs": inputs.verification_latency_ms}
    return {
        "observedGeneration": inputs.generation,
        "conditions": merge_conditions(old.get("conditions") or [], assessment.conditions,
                                       inputs.now, inputs.generation),
        "endpoints": endpoints,
        "models": models,
        "modelCount": len(models),
        "lastCheck": {k: v for k, v in last_check.items() if v is not None},
        "credentialVersion": inputs.credential_version,
    }


def _comparable(status: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in status.items() if k != "lastCheck" and v not in (None, [], {})}
    out["conditions"] = sorted(
        ({k: v for k, v in c.items() if k != "lastTransitionTime"}
         for c in status.get("conditions") or []),
        key=lambda c: str(c.get("type")),
    )
    return out


def needs_write(old: Mapping[str, Any], new: Mapping[str, Any], *, refresh_after: float,
                age_of_last_check: float | None) -> bool:
    """Write when anything but ``lastCheck`` changed, or when ``lastCheck`` is older than
    ``refresh_after`` seconds (so a periodic check is visible once per interval, and repeated
    triggers without change cost nothing)."""
    if _comparable(old) != _comparable(new):
        return True
    return age_of_last_check is None or age_of_last_check >= refresh_after


@dataclass(frozen=True)
class EventSpec:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def _ready(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)


def _names(ids: list[str]) -> str:
    shown = ", ".join(ids[:_MAX_NAMES_IN_EVENT])
    more = len(ids) - _MAX_NAMES_IN_EVENT
    return shown + (f" and {more} more" if more > 0 else "")


def transitions(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[EventSpec]:
    """Events for what changed between two statuses; nothing when nothing changed."""
    events: list[EventSpec] = []
    before, after = _ready(old), _ready(new)
    if after is not None:
        was = before.get("status") if before else None
        if after["status"] == "True" and was != "True":
            events.append(EventSpec("Normal", "BecameReady", str(after.get("message", ""))))
        elif after["status"] != "True" and (
            was == "True" or (before or {}).get("reason") != after.get("reason")
        ):
            events.append(EventSpec("Warning", "BecameUnready" if was == "True" else "NotReady",
                                    f"{after.get('reason')}: {after.get('message', '')}"))
    old_ids = {m["id"] for m in old.get("models") or []}
    new_ids = {m["id"] for m in new.get("models") or []}
    if old.get("conditions") and new_ids - old_ids:
        events.append(EventSpec("Normal", "ModelsAdded", _names(sorted(new_ids - old_ids))))
    if old_ids - new_ids and new_ids:
        events.append(EventSpec("Normal", "ModelsRemoved", _names(sorted(old_ids - new_ids))))
    old_cred, new_cred = old.get("credentialVersion"), new.get("credentialVersion")
    if old_cred and new_cred and old_cred != new_cred:
        events.append(EventSpec("Normal", "CredentialRotated",
                                f"now using API key version {new_cred}"))
    return events
