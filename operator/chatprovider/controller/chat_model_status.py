"""Writing the ChatModels' status: which backends are usable, and Ready while one is.

A ChatModel's status depends on it and on the providers of its namespace, so it is recomputed
when the ChatModel changes and when a provider of its namespace changes (the registry's
listeners put it on a :class:`~chatprovider.controller.workqueue.WorkQueue`, which deduplicates),
and server-side applied with the operator's field manager only when it says something new. Only
the leader writes (:meth:`ChatModelStatusWriter.run` runs while leading; it starts by queuing
every ChatModel, so a new leader catches up).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from chatprovider.api.chatmodel import CHATMODEL_KIND, CHATMODEL_PLURAL
from chatprovider.controller.status import apply_status
from chatprovider.controller.workqueue import WorkQueue
from chatprovider.domain.routing import Catalog, CatalogEntry, ProviderRef
from chatprovider.domain.virtual_models import ChatModelRef, chat_model_status, needs_model_write
from chatprovider.kube.client import KubeClient
from chatprovider.registry import Registry

__all__ = ["ChatModelStatusWriter"]

log = logging.getLogger(__name__)

_RETRY = 5.0  # seconds before a failed write is tried again


class ChatModelStatusWriter:
    """Keeps every ChatModel's status in step with the providers of its namespace."""

    def __init__(self, kube: KubeClient, registry: Registry, *,
                 may_write: Callable[[], bool] = lambda: True,
                 wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
                 ) -> None:
        self._kube, self._registry, self._may_write = kube, registry, may_write
        self._wall = wall_clock
        self.queue: WorkQueue[ChatModelRef] = WorkQueue()
        self.writes = 0
        registry.listen(self._provider_changed)
        registry.chat_models.listen(self.queue.add)

    def _provider_changed(self, ref: ProviderRef) -> None:
        for model in self._registry.chat_models.in_namespace(ref.namespace):
            self.queue.add(model)

    async def run(self) -> None:
        """Write statuses until cancelled (while this replica leads)."""
        for view in self._registry.chat_models:
            self.queue.add(view.ref)
        while (ref := await self.queue.get()) is not None:
            again: float | None = None
            try:
                await self.write(ref)
            except asyncio.CancelledError:
                again = 0.0
                raise
            except Exception:  # the API server going away, or a bug: retry, never crash
                log.exception("writing the status of ChatModel %s failed; retrying", ref)
                again = _RETRY
            finally:
                self.queue.done(ref, again)

    def _catalog(self, namespace: str) -> Catalog:
        return Catalog.build(CatalogEntry(v.ref, v.ready, v.model_ids) for v in self._registry
                             if v.ref.namespace == namespace)

    async def write(self, ref: ChatModelRef) -> bool:
        """Apply ``ref``'s status if it changed; whether it was written."""
        view = self._registry.chat_models.get(ref)
        if view is None:
            return False
        new = chat_model_status(ref.namespace, view.spec, view.generation, view.status,
                                self._catalog(ref.namespace), self._wall())
        if not needs_model_write(view.status, new) or not self._may_write():
            return False
        if not await apply_status(self._kube, CHATMODEL_KIND, CHATMODEL_PLURAL, ref.namespace,
                                  ref.name, new):
            return False  # deleted meanwhile
        self.writes += 1
        ready = new.conditions[0]
        log.info("ChatModel %s: Ready=%s reason=%s (%s)", ref, ready.status, ready.reason,
                 new.summary)
        return True
