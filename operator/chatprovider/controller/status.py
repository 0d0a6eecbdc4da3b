"""Writing a provider's status: server-side apply of the typed status, with the operator's own
field manager.

The applied object holds the whole status as the operator wants it, so a field that no longer
applies (a ``lastCheck`` latency after a failure, a discovered model that went away) disappears
from the stored status, and conditions of other types (another manager's) stay. An apply that
changes nothing changes nothing on the server either (no new resourceVersion).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from chatprovider.api.v1alpha1 import GROUP, KIND, PLURAL, VERSION, ChatProviderStatus
from chatprovider.kube.client import ApiError, KubeClient
from chatprovider.registry import ProviderView

__all__ = ["FIELD_MANAGER", "StatusApplier"]

log = logging.getLogger(__name__)

#: The field manager of everything the operator writes.
FIELD_MANAGER = "chatprovider-operator"


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
        ns, name = view.ref.namespace, view.ref.name
        body = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": name, "namespace": ns},
            "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{name}/status"
        try:
            await self._client.apply(path, body, field_manager=self._field_manager)
        except ApiError as exc:
            if exc.not_found:  # deleted meanwhile
                return False
            raise
        return True
