"""Turning ChatProvider watch events into the shared :class:`Registry` and object references."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from chatprovider.domain.routing import ProviderRef
from chatprovider.kube.objects import ReferencedObjects
from chatprovider.registry import ProviderView, Registry, ref_of, view_from_body

__all__ = ["Feed"]

log = logging.getLogger(__name__)


class Feed:
    """Keeps the registry and the watched Secrets/ConfigMaps in step with the providers."""

    def __init__(self, registry: Registry, objects: ReferencedObjects) -> None:
        self.registry, self.objects = registry, objects

    def observe(self, event_type: str, body: Mapping[str, Any]) -> ProviderView | None:
        """Apply one event; returns the new view, or None when the provider is gone or invalid."""
        ref = ref_of(body)
        if event_type == "DELETED":
            self.forget(ref)
            return None
        try:
            view = view_from_body(body, self.registry.get(ref))
        except ValidationError as exc:  # the CRD schema should have refused it
            log.warning("ignoring %s: spec does not validate (%d errors)", ref, exc.error_count())
            return None
        self.registry.upsert(view)
        self.objects.set_references(ref, view.referenced_objects())
        return view

    def forget(self, ref: ProviderRef) -> None:
        self.registry.remove(ref)
        self.objects.set_references(ref, ())
