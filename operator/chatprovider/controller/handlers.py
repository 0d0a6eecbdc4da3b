"""The kopf handlers: thin adapters from kopf's watch machinery to the :class:`Reconciler`.

Handlers are registered on a registry built here (no import-time registration into kopf's global
registry). Only ``on.event`` is used for ChatProviders: it stores nothing on the objects (no
``last-handled-configuration`` annotation, no finalizer), so the status patch is the operator's only
write, and deleting a provider is never blocked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from chatprovider.api.v1alpha1 import GROUP, PLURAL, VERSION
from chatprovider.kube.config import KubeConfig
from chatprovider.settings import OperatorSettings

__all__ = ["build_kopf_registry", "configure_kopf"]

Observer = Callable[[str, Mapping[str, Any]], None]


def configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings | None = None
                   ) -> None:
    """kopf settings shared by the operator and the standalone relay (watch timeouts from
    ``ours``)."""
    ours = ours or OperatorSettings()
    # A watch that goes silent (nolar/kopf#585) is re-established: the server ends each watch
    # after server_timeout, the client gives up after client_timeout in total, or after
    # inactivity_timeout without any event (the API server sends bookmarks in between).
    settings.watching.server_timeout = int(ours.watch_server_timeout)  # timeoutSeconds
    settings.watching.client_timeout = ours.watch_client_timeout
    settings.watching.inactivity_timeout = ours.watch_inactivity_timeout
    settings.watching.connect_timeout = 10
    settings.watching.reconnect_backoff = 1.0
    # kopf would otherwise post its log lines as Kubernetes Events; we post our own, deliberately.
    settings.posting.enabled = False
    settings.networking.request_timeout = 30


def connection_info(config: KubeConfig) -> kopf.ConnectionInfo:
    """kopf's credentials, from the same :class:`KubeConfig` our own client uses."""
    token = config.bearer_token()
    return kopf.ConnectionInfo(
        server=config.server,
        ca_path=config.ca_file,
        insecure=not config.verify_ssl,
        scheme="Bearer" if token else None,
        token=token,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )


def build_kopf_registry(observe: Observer, *, config: KubeConfig, liveness: Callable[[], int],
                        settings: OperatorSettings | None = None) -> kopf.OperatorRegistry:
    """A registry whose ChatProvider events go to ``observe(event_type, body)``."""
    registry = kopf.OperatorRegistry()
    ours = settings

    @kopf.on.startup(registry=registry)
    async def _configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, ours)

    @kopf.on.login(registry=registry)
    async def _login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(config)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def _on_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        observe(type or "ADDED", body)

    @kopf.on.probe(id="providers", registry=registry)
    async def _providers(**_: Any) -> int:
        return liveness()

    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    return registry
