"""The routing catalog of the registry's current contents, rebuilt only when it changes."""

from __future__ import annotations

from chatprovider.domain.routing import Catalog, CatalogEntry, ProviderKey
from chatprovider.registry import ProviderRef, ProviderView, Registry

__all__ = ["CatalogCache", "provider_key", "provider_ref"]


def provider_key(ref: ProviderRef) -> ProviderKey:
    return ProviderKey(ref.namespace, ref.name)


def provider_ref(key: ProviderKey) -> ProviderRef:
    return ProviderRef(key.namespace, key.name)


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

    def view(self, key: ProviderKey) -> ProviderView | None:
        return self._registry.get(provider_ref(key))


def _entry(view: ProviderView) -> CatalogEntry:
    return CatalogEntry(provider_key(view.ref), view.ready, view.model_ids)
