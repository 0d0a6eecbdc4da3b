"""Posting Kubernetes Events about a ChatProvider (core/v1, as kubectl describe shows them): the
operator's (status transitions) and the relay's (passive health), each as its own component."""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import socket
from collections.abc import Callable

from chatprovider.api.v1alpha1 import GROUP, KIND, VERSION
from chatprovider.domain.status import EventSpec
from chatprovider.kube.client import ApiError, KubeClient
from chatprovider.registry import ProviderView

__all__ = ["OPERATOR_COMPONENT", "RELAY_COMPONENT", "EventRecorder", "identity"]

log = logging.getLogger(__name__)
OPERATOR_COMPONENT = "chatprovider-operator"
RELAY_COMPONENT = "chatprovider-relay"


def identity() -> str:
    """This replica's name (in the Lease, and as the Events' ``reportingInstance``): the pod's
    name when the chart sets ``POD_ID``."""
    return os.environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}"


class EventRecorder:
    """Posts Events as ``instance`` of ``component``; ``may_post`` (the leader election) is
    asked first."""

    def __init__(self, client: KubeClient, instance: str, *,
                 component: str = OPERATOR_COMPONENT,
                 may_post: Callable[[], bool] = lambda: True) -> None:
        self._client = client
        self._instance = instance
        self._component = component
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
            "source": {"component": self._component},
            "reportingComponent": self._component,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._client.create(f"/api/v1/namespaces/{ns}/events", body)
        except (ApiError, OSError) as exc:  # events are best effort
            log.warning("could not post event %s for %s: %s", event.reason, view.ref, exc)
