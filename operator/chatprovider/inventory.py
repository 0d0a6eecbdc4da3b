"""What the watch has told a process exists, and the sweep that finds what it failed to say.

kopf lists again when a watch ends with ``410 Gone`` (its resourceVersion is older than the API
server keeps), and replays only the objects that still exist: an object deleted during that gap
never gets a DELETED event (kopf 1.45, ``_cogs/clients/watching.py``: the listed objects are
yielded as events of type None, and nothing is compared with what was known). A ChatProvider
deleted then would stay in the registry: the relay would still route to it, and the operator
would still send its key to its endpoint at every check, until a restart.

:class:`Inventory` keeps, for each kind watched, the uid of every object its observer was told
about. :meth:`Inventory.sweep` lists the kind's objects (metadata only) and forgets, with a
DELETED event to the observer, each known object that is not there, once a GET confirms that
it is gone (the list may be older than an object the watch delivered since). The watch runs a
sweep after each of kopf's lists (:class:`chatprovider.watch.ProviderWatch`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chatprovider.api.v1alpha1 import GROUP, VERSION
from chatprovider.domain.routing import ProviderRef
from chatprovider.kube.client import ApiError, KubeClient
from chatprovider.registry import ref_of

__all__ = ["Inventory", "Observer"]

Observer = Callable[[str, Mapping[str, Any]], None]
log = logging.getLogger(__name__)


class Inventory:
    """Events of each plural of ``observers`` go through :meth:`deliver`, which remembers the
    uid of what exists; ``namespaces`` is the scope watched (empty: every namespace)."""

    def __init__(self, kube: KubeClient, observers: Mapping[str, Observer],
                 namespaces: Sequence[str] = ()) -> None:
        self._kube = kube
        self._observers = dict(observers)
        self._namespaces = tuple(namespaces)
        self._known: dict[str, dict[ProviderRef, str]] = {p: {} for p in self._observers}

    def deliver(self, plural: str, event_type: str, body: Mapping[str, Any]) -> None:
        """Hand one event of ``plural`` to its observer, and remember what now exists."""
        ref = ref_of(body)
        if event_type == "DELETED":
            self._known[plural].pop(ref, None)
        else:
            self._known[plural][ref] = str((body.get("metadata") or {}).get("uid", ""))
        self._observers[plural](event_type, body)

    def known(self, plural: str) -> Mapping[ProviderRef, str]:
        """The objects of ``plural`` the observer was told exist, with their uids."""
        return self._known[plural]

    def collection_paths(self, plural: str) -> list[str]:
        """Where ``plural`` is listed: in each namespace watched, or across the cluster."""
        return ([f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{plural}" for ns in self._namespaces]
                or [f"/apis/{GROUP}/{VERSION}/{plural}"])

    async def sweep(self, plural: str) -> list[ProviderRef]:
        """Forget each known object of ``plural`` that no longer exists (the observer gets a
        DELETED event for it); the objects forgotten. Raises what the API server raises."""
        listed: set[ProviderRef] = set()
        for path in self.collection_paths(plural):
            items = (await self._kube.list_metadata(path)).get("items") or []
            listed.update(ref_of(item) for item in items)
        missing = [(ref, uid) for ref, uid in self._known[plural].items() if ref not in listed]
        forgotten: list[ProviderRef] = []
        for ref, uid in missing:
            if await self._exists(plural, ref, uid):
                continue  # created after the list was taken
            if self._known[plural].get(ref) != uid:
                continue  # the watch has said something newer meanwhile
            log.info("%s %s was deleted while the watch was reconnecting: forgetting it",
                     plural, ref)
            self.deliver(plural, "DELETED", {"metadata": {
                "namespace": ref.namespace, "name": ref.name, "uid": uid}})
            forgotten.append(ref)
        return forgotten

    async def _exists(self, plural: str, ref: ProviderRef, uid: str) -> bool:
        """Whether the object ``uid`` is still there (not a new object of the same name)."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{ref.namespace}/{plural}/{ref.name}"
        try:
            body = await self._kube.get(path)
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return str((body.get("metadata") or {}).get("uid", "")) == uid
