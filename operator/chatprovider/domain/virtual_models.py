"""Virtual models: a ChatModel's backends, which of them are usable, the routes of one request,
and the ChatModel's status (pure).

A backend (or failover entry) is *usable* when its ChatProvider exists in the ChatModel's
namespace, is Ready for its generation and offers the backend's model. The routes of one
request, in the order the relay tries them (the next one only when the previous one failed
before the request was sent):

1. one usable weighted backend, drawn at random in proportion to the weights (``draw`` is a
   number in [0, 1), injected so that tests are deterministic);
2. the other usable weighted backends with a weight above 0, in spec order;
3. the usable failover entries, in spec order.

A weight of 0 takes no traffic and is not a fallback either (the first step of a blue/green
rollout). The ChatModel is Ready while at least one route exists.

Names (docs/relay.md, "Virtual models"): a request's ``model`` of ``<namespace>/<name>`` naming
a ChatModel, or a bare ``<name>`` naming a ChatModel the caller may use, routes to it before any
provider model id of the same spelling.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from chatprovider.api.chatmodel import BackendStatus, ChatModelSpec, ChatModelStatus
from chatprovider.domain.conditions import (
    ConditionType,
    DesiredCondition,
    ModelReason,
    merge_conditions,
)
from chatprovider.domain.routing import (
    Catalog,
    ProviderRef,
    Route,
    RoutingError,
)
from chatprovider.domain.status import rfc3339

__all__ = [
    "AmbiguousChatModel",
    "BackendReason",
    "ChatModelForbidden",
    "ChatModelNotReady",
    "ChatModelRef",
    "backend_reason",
    "backend_statuses",
    "chat_model_status",
    "needs_model_write",
    "parse_chat_model",
    "plan",
    "resolve",
    "summary",
    "usable",
]


@dataclass(frozen=True, order=True, slots=True)
class ChatModelRef:
    """Namespace and name of a ChatModel (a type apart from :class:`ProviderRef`: a ChatModel and
    a ChatProvider of the same name are different resources, authorized separately)."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class BackendReason(StrEnum):
    """Why one backend is (not) usable (``status.backends[].reason``)."""

    USABLE = "Usable"
    PROVIDER_NOT_FOUND = "ProviderNotFound"
    PROVIDER_NOT_READY = "ProviderNotReady"
    MODEL_NOT_OFFERED = "ModelNotOffered"


class ChatModelNotReady(RoutingError):
    """The caller may use the ChatModel, but none of its backends is usable."""

    status = 503
    code = "model_not_ready"


class ChatModelForbidden(RoutingError):
    """The caller may not use the ChatModel named with its namespace."""

    status = 403
    code = "model_forbidden"


class AmbiguousChatModel(RoutingError):
    """A bare name names ChatModels of several namespaces that the caller may use."""

    code = "ambiguous_model"


def parse_chat_model(model: str, names: Callable[[str], Iterable[ChatModelRef]]
                     ) -> tuple[ChatModelRef, ...]:
    """The ChatModels a request's ``model`` may name: ``<namespace>/<name>`` when it exists, or
    every ChatModel called ``model`` (``names(name)`` lists those of every namespace)."""
    namespace, sep, name = model.partition("/")
    if sep:
        return tuple(r for r in names(name) if r.namespace == namespace) if "/" not in name \
            else ()
    return tuple(sorted(names(model)))


def backend_reason(namespace: str, provider: str, model: str, catalog: Catalog) -> BackendReason:
    """Whether the backend ``provider``/``model`` of a ChatModel of ``namespace`` is usable."""
    entry = catalog.get(ProviderRef(namespace, provider))
    if entry is None:
        return BackendReason.PROVIDER_NOT_FOUND
    if not entry.ready:
        return BackendReason.PROVIDER_NOT_READY
    if model not in entry.models:
        return BackendReason.MODEL_NOT_OFFERED
    return BackendReason.USABLE


def plan(ref: ChatModelRef, spec: ChatModelSpec, catalog: Catalog, draw: float,
         origin: ProviderRef | None = None) -> tuple[Route, ...]:
    """The routes of one request to the ChatModel ``ref``, in the order to try them; raises
    :class:`ChatModelNotReady` when none is usable. ``draw`` in [0, 1) picks the first; a
    usable backend on ``origin`` (the provider that made the Responses answer a call
    continues) goes first instead."""
    ns = ref.namespace

    def usable(provider: str, model: str) -> bool:
        return backend_reason(ns, provider, model, catalog) is BackendReason.USABLE

    weighted = [(Route(ProviderRef(ns, b.provider), b.model), b.weight) for b in spec.backends
                if b.weight > 0 and usable(b.provider, b.model)]
    routes: list[Route] = []
    total = sum(weight for _, weight in weighted)
    if weighted:
        point, chosen = draw * total, len(weighted) - 1
        for index, (_, weight) in enumerate(weighted):
            if point < weight:
                chosen = index
                break
            point -= weight
        routes.append(weighted[chosen][0])
        routes += [r for index, (r, _) in enumerate(weighted) if index != chosen]
    for entry in spec.failover:
        route = Route(ProviderRef(ns, entry.provider), entry.model)
        if usable(entry.provider, entry.model) and route not in routes:
            routes.append(route)
    if not routes:
        raise ChatModelNotReady(f"no backend of model {ref} is usable right now")
    pinned = [r for r in routes if r.provider == origin]
    return tuple(pinned[:1] + [r for r in routes if r not in pinned[:1]])


def usable(ref: ChatModelRef, spec: ChatModelSpec, catalog: Catalog) -> bool:
    """Whether a request to the ChatModel has a route (what ``GET /v1/models`` lists)."""
    try:
        plan(ref, spec, catalog, 0.0)
    except ChatModelNotReady:
        return False
    return True


def resolve(model: str, found: tuple[ChatModelRef, ...], may_use: Mapping[ChatModelRef, bool]
            ) -> ChatModelRef | None:
    """The ChatModel a request names, given the ChatModels :func:`parse_chat_model` found and
    which of them the caller may use; None: route ``model`` as a provider model id.

    ``<namespace>/<name>`` of an existing ChatModel is that ChatModel (403 when forbidden). A
    bare name is the one ChatModel of that name the caller may use (400 for several); with
    none, the bare id is a provider model id (nothing is revealed about ChatModels the caller
    may not use)."""
    if "/" in model:
        if not found:
            return None
        if not may_use.get(found[0], False):
            raise ChatModelForbidden(f"you may not use model {found[0]}")
        return found[0]
    allowed = [r for r in found if may_use.get(r, False)]
    if len(allowed) > 1:
        ids = tuple(str(r) for r in allowed)
        raise AmbiguousChatModel(
            f"model {model!r} names ChatModels in {len(ids)} namespaces; use"
            f" <namespace>/{model}, such as {ids[0]!r}", ids)
    return allowed[0] if allowed else None


def backend_statuses(namespace: str, spec: ChatModelSpec, catalog: Catalog
                     ) -> list[BackendStatus]:
    """Each weighted backend, then each failover entry, and whether it is usable."""
    out: list[BackendStatus] = []
    for b in spec.backends:
        reason = backend_reason(namespace, b.provider, b.model, catalog)
        out.append(BackendStatus(provider=b.provider, model=b.model, role="weighted",
                                 weight=b.weight, ready=reason is BackendReason.USABLE,
                                 reason=str(reason)))
    for f in spec.failover:
        reason = backend_reason(namespace, f.provider, f.model, catalog)
        out.append(BackendStatus(provider=f.provider, model=f.model, role="failover",
                                 ready=reason is BackendReason.USABLE, reason=str(reason)))
    return out


def summary(backends: Iterable[BackendStatus]) -> str:
    """One line for ``kubectl get``: ``provider/model=weight`` for each weighted backend, then
    ``failover:provider/model``; ``(not ready)`` marks one that is not usable."""
    parts = []
    for b in backends:
        text = f"{b.provider}/{b.model}={b.weight}" if b.role == "weighted" else \
            f"failover:{b.provider}/{b.model}"
        parts.append(text if b.ready else f"{text} (not ready)")
    return ", ".join(parts)[:4096]


def _ready(backends: list[BackendStatus]) -> DesiredCondition:
    usable = [b for b in backends if b.ready and (b.role == "failover" or (b.weight or 0) > 0)]
    counted = [b for b in backends if b.role == "failover" or (b.weight or 0) > 0]
    not_usable = [f"{b.provider}/{b.model} ({b.reason})" for b in backends if not b.ready]
    ready = ConditionType.READY
    if not usable:
        return DesiredCondition(ready, "False", ModelReason.NO_BACKEND_USABLE,
                                "no backend is usable: " + ", ".join(not_usable))
    if len(usable) == len(counted):
        return DesiredCondition(ready, "True", ModelReason.BACKENDS_USABLE,
                                f"{len(usable)} of {len(counted)} backends usable")
    return DesiredCondition(ready, "True", ModelReason.SOME_BACKENDS_USABLE,
                            f"{len(usable)} of {len(counted)} backends usable; not usable: "
                            + ", ".join(not_usable))


def chat_model_status(namespace: str, spec: ChatModelSpec, generation: int,
                      old: ChatModelStatus, catalog: Catalog, now: dt.datetime
                      ) -> ChatModelStatus:
    """The complete status of a ChatModel (``old`` gives the conditions' transition times)."""
    backends = backend_statuses(namespace, spec, catalog)
    conditions = merge_conditions([c for c in old.conditions if c.type == ConditionType.READY],
                                  [_ready(backends)], rfc3339(now), generation)
    return ChatModelStatus(observed_generation=generation, conditions=conditions,
                           backends=backends, summary=summary(backends))


def _said(status: ChatModelStatus) -> dict[str, Any]:
    out = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    out["conditions"] = [c for c in out.get("conditions", []) if c["type"] == "Ready"]
    return out


def needs_model_write(old: ChatModelStatus, new: ChatModelStatus) -> bool:
    """Whether ``new`` says anything the stored ``old`` does not."""
    return _said(old) != _said(new)

