"""The routing catalog of the registry's current contents, rebuilt only when it changes."""

from __future__ import annotations

from chatprovider.chat_models import ChatModels
from chatprovider.domain.routing import Catalog, CatalogEntry, ProviderRef
from chatprovider.registry import ProviderView, Registry

__all__ = ["CatalogCache"]


class CatalogCache:
    """``current()`` is a dictionary look-up unless the registry changed since the last call."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._version = -1
        self._catalog = Catalog.build(())

    def current(self) -> Catalog:
        if self._registry.version != self._version:
            version = self._registry.version
            self._catalog = Catalog.build(_entry(v) for v in self._registry)
            self._version = version
        return self._catalog

    @property
    def version(self) -> int:
        """Moves whenever the registry changes (a provider's labels included)."""
        return self._registry.version

    def view(self, ref: ProviderRef) -> ProviderView | None:
        return self._registry.get(ref)

    @property
    def chat_models(self) -> ChatModels:
        """The ChatModels (virtual models) over the providers."""
        return self._registry.chat_models


def _entry(view: ProviderView) -> CatalogEntry:
    return CatalogEntry(view.ref, view.ready, view.model_ids)
