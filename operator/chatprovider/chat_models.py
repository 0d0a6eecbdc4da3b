"""The in-memory view of ChatModels that the operator and the relay share (virtual models).

Fed from watch events (:meth:`ChatModels.observe`, the ``(event_type, body)`` observer of the
ChatProvider watch's ``others``) and read on the relay's hot path with no I/O and no lock (one
event loop). A ChatModel whose spec does not validate (the CRD's schema should have refused it)
is dropped with a warning, so that an older copy never keeps routing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from chatprovider.api.chatmodel import ChatModelSpec, ChatModelStatus
from chatprovider.domain.virtual_models import ChatModelRef

__all__ = ["ChatModelView", "ChatModels"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatModelView:
    """One ChatModel as last observed."""

    ref: ChatModelRef
    uid: str
    generation: int
    spec: ChatModelSpec
    status: ChatModelStatus


def _status(raw: Any) -> ChatModelStatus:
    try:
        return ChatModelStatus.model_validate(raw or {})
    except ValidationError:  # written by someone else: as if not written yet
        return ChatModelStatus()


class ChatModels:
    """ChatModels by reference, with a version that moves on every change (a cache key)."""

    def __init__(self) -> None:
        self._views: dict[ChatModelRef, ChatModelView] = {}
        self._by_name: dict[str, set[ChatModelRef]] = {}
        self._listeners: list[Callable[[ChatModelRef], None]] = []
        self.version = 0

    def listen(self, listener: Callable[[ChatModelRef], None]) -> None:
        """Call ``listener(ref)`` after every change of a ChatModel; it must not block."""
        self._listeners.append(listener)

    def observe(self, event_type: str, body: Mapping[str, Any]) -> None:
        """Apply one watch event (``ADDED``, ``MODIFIED``, ``DELETED``)."""
        meta = body.get("metadata") or {}
        ref = ChatModelRef(str(meta.get("namespace", "")), str(meta.get("name", "")))
        if event_type == "DELETED":
            self._remove(ref)
            return
        try:
            spec = ChatModelSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            log.warning("ignoring ChatModel %s: its spec does not validate (%d errors)", ref,
                        exc.error_count())
            self._remove(ref)
            return
        self._views[ref] = ChatModelView(ref, str(meta.get("uid", "")),
                                         int(meta.get("generation") or 0), spec,
                                         _status(body.get("status")))
        self._by_name.setdefault(ref.name, set()).add(ref)
        self._changed(ref)

    def _remove(self, ref: ChatModelRef) -> None:
        if self._views.pop(ref, None) is None:
            return
        names = self._by_name.get(ref.name, set())
        names.discard(ref)
        if not names:
            self._by_name.pop(ref.name, None)
        self._changed(ref)

    def _changed(self, ref: ChatModelRef) -> None:
        self.version += 1
        for listener in self._listeners:
            listener(ref)

    def get(self, ref: ChatModelRef) -> ChatModelView | None:
        return self._views.get(ref)

    def named(self, name: str) -> tuple[ChatModelRef, ...]:
        """The ChatModels called ``name``, in every namespace."""
        return tuple(sorted(self._by_name.get(name, ())))

    def in_namespace(self, namespace: str) -> tuple[ChatModelRef, ...]:
        return tuple(sorted(r for r in self._views if r.namespace == namespace))

    def __iter__(self) -> Iterator[ChatModelView]:
        return iter([self._views[r] for r in sorted(self._views)])

    def __len__(self) -> int:
        return len(self._views)
