"""Writing status: server-side apply of the typed status, with the operator's own field manager
(:func:`apply_status`, for every kind the operator writes; :class:`StatusApplier` for
providers, asked whether this replica may write).

The applied object holds the whole status as the operator wants it, so a field that no longer
applies (a ``lastCheck`` latency after a failure, a discovered model that went away) disappears
from the stored status, and conditions of other types (another manager's) stay. An apply that
changes nothing changes nothing on the server either (no new resourceVersion).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import BaseModel

from chatprovider.api.v1alpha1 import GROUP, KIND, PLURAL, VERSION, ChatProviderStatus
from chatprovider.kube.client import ApiError, KubeClient
from chatprovider.registry import ProviderView

__all__ = ["FIELD_MANAGER", "StatusApplier", "apply_status"]

log = logging.getLogger(__name__)

#: The field manager of everything the operator writes.
FIELD_MANAGER = "chatprovider-operator"


async def apply_status(client: KubeClient, kind: str, plural: str, namespace: str, name: str,
                       status: BaseModel, *, field_manager: str = FIELD_MANAGER) -> bool:
    """Apply ``status`` to the status of the ``kind`` object ``namespace/name`` of this API
    group; False when the object is gone (deleted meanwhile)."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}/status"
    try:
        await client.apply(path, body, field_manager=field_manager)
    except ApiError as exc:
        if exc.not_found:
            return False
        raise
    return True


class StatusApplier:
    """Applies statuses; ``may_write`` (the leader election) is asked right before each write."""

    def __init__(self, client: KubeClient, *, may_write: Callable[[], bool] = lambda: True,
                 field_manager: str = FIELD_MANAGER) -> None:
        self._client = client
        self._may_write = may_write
        self._field_manager = field_manager

    async def apply(self, view: ProviderView, status: ChatProviderStatus) -> bool:
        """Write ``status``; False when the provider is gone or this replica may not write."""
        if not self._may_write():
            log.info("not writing the status of %s: no longer the leader", view.ref)
            return False
        return await apply_status(self._client, KIND, PLURAL, view.ref.namespace, view.ref.name,
                                  status, field_manager=self._field_manager)
