"""The in-memory view of ChatProviders that the operator and the relay share.

It is fed from watch events (spec and status as the API server has them) and read on the relay's
hot path, so reads are plain dictionary look-ups with no locking (single event loop) and no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import ValidationError

from chatprovider.api.compaction import compact
from chatprovider.api.v1alpha1 import ChatProviderSpec, ChatProviderStatus
from chatprovider.chat_models import ChatModels
from chatprovider.domain.routing import ProviderRef
from chatprovider.domain.status import ready_condition

__all__ = ["ObjectRef", "ProviderView", "Registry", "ref_of", "view_from_body"]


@dataclass(frozen=True, order=True)
class ObjectRef:
    """A Secret or ConfigMap in a namespace."""

    kind: str  # "Secret" or "ConfigMap"
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ProviderView:
    """One ChatProvider as last observed: its spec, and what the operator wrote in status."""

    ref: ProviderRef
    uid: str
    generation: int
    spec: ChatProviderSpec
    status: ChatProviderStatus
    annotations: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    """The provider's labels (ChatQuotas select providers by them)."""

    @cached_property
    def ready(self) -> bool:
        """Ready=True for the current generation (computed once: a view never changes)."""
        cond = ready_condition(self.status)
        return cond is not None and cond.status == "True" and (
            self.status.observed_generation is None
            or self.status.observed_generation == self.generation)

    @cached_property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.status.models)

    def referenced_objects(self) -> tuple[ObjectRef, ...]:
        """The Secrets and ConfigMaps this provider needs (its key and its CA bundle)."""
        ns = self.ref.namespace
        refs: list[ObjectRef] = []
        if self.spec.api_key_secret_ref is not None:
            refs.append(ObjectRef("Secret", ns, self.spec.api_key_secret_ref.name))
        bundle = self.spec.tls.ca_bundle
        if bundle is not None and bundle.secret_key_ref is not None:
            refs.append(ObjectRef("Secret", ns, bundle.secret_key_ref.name))
        if bundle is not None and bundle.config_map_key_ref is not None:
            refs.append(ObjectRef("ConfigMap", ns, bundle.config_map_key_ref.name))
        return tuple(refs)


def view_from_body(body: Mapping[str, Any], previous: ProviderView | None = None
                   ) -> ProviderView:
    """Build a view from a raw object; raises pydantic's ValidationError on a malformed spec.
    Its spec and status are :func:`compact` (a registry holds one view per provider) and so
    read-only. ``previous`` is the view this one replaces: its spec is kept when the body is
    the same object (uid) at the same generation, which the API server moves on every change
    of the spec, so that a change of status alone (most events: each check's write) does not
    validate the spec again."""
    meta = body.get("metadata") or {}
    uid, generation = str(meta.get("uid", "")), int(meta.get("generation") or 0)
    if previous is not None and uid and generation and (
            previous.uid, previous.generation) == (uid, generation):
        spec = previous.spec
    else:
        spec = compact(ChatProviderSpec.model_validate(body.get("spec") or {}))
    return ProviderView(
        ref=ref_of(body),
        uid=uid,
        generation=generation,
        spec=spec,
        status=compact(_status(body.get("status"))),
        annotations=dict(meta.get("annotations") or {}),
        resource_version=str(meta.get("resourceVersion", "")),
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
    )


def ref_of(body: Mapping[str, Any]) -> ProviderRef:
    """The namespace and name of a raw ChatProvider."""
    meta = body.get("metadata") or {}
    return ProviderRef(str(meta.get("namespace", "")), str(meta.get("name", "")))


def _status(raw: Any) -> ChatProviderStatus:
    try:
        return ChatProviderStatus.model_validate(raw or {})
    except ValidationError:  # a status written by someone else: treat as not yet checked
        return ChatProviderStatus()


class Registry:
    """ChatProviders by reference, with a version that moves on every change (a cache key);
    ``chat_models`` holds the ChatModels (virtual models) over them."""

    def __init__(self) -> None:
        self._views: dict[ProviderRef, ProviderView] = {}
        self.chat_models = ChatModels()
        self._listeners: list[Callable[[ProviderRef], None]] = []
        self.version = 0

    def listen(self, listener: Callable[[ProviderRef], None]) -> None:
        """Call ``listener(ref)`` after every change of a provider (upserted or removed), in
        the loop that changes the registry; it must not block."""
        self._listeners.append(listener)

    def upsert(self, view: ProviderView) -> None:
        self._views[view.ref] = view
        self.version += 1
        self._notify(view.ref)

    def remove(self, ref: ProviderRef) -> None:
        if self._views.pop(ref, None) is not None:
            self.version += 1
            self._notify(ref)

    def _notify(self, ref: ProviderRef) -> None:
        for listener in self._listeners:
            listener(ref)

    def get(self, ref: ProviderRef) -> ProviderView | None:
        return self._views.get(ref)

    def __iter__(self) -> Iterator[ProviderView]:
        return iter(list(self._views.values()))

    def __len__(self) -> int:
        return len(self._views)
