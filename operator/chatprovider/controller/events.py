"""Posting Kubernetes Events about a ChatProvider (core/v1, as kubectl describe shows them)."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable

from chatprovider.api.v1alpha1 import GROUP, KIND, VERSION
from chatprovider.domain.status import EventSpec
from chatprovider.kube.client import ApiError, KubeClient
from chatprovider.registry import ProviderView

__all__ = ["EventRecorder"]

log = logging.getLogger(__name__)
COMPONENT = "chatprovider-operator"


class EventRecorder:
    """Posts Events as ``instance``; ``may_post`` (the leader election) is asked first."""

    def __init__(self, client: KubeClient, instance: str, *,
                 may_post: Callable[[], bool] = lambda: True) -> None:
        self._client = client
        self._instance = instance
        self._may_post = may_post

    async def post(self, view: ProviderView, event: EventSpec) -> None:
        if not self._may_post():
            return
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ns = view.ref.namespace
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{view.ref.name}.{secrets.token_hex(8)}", "namespace": ns},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "namespace": ns,
                "name": view.ref.name, "uid": view.uid,
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._client.create(f"/api/v1/namespaces/{ns}/events", body)
        except (ApiError, OSError) as exc:  # events are best effort
            log.warning("could not post event %s for %s: %s", event.reason, view.ref, exc)
