"""The operator process: kopf watches, the reconciler, and (optionally) the embedded relay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

import kopf

from chatprovider.controller.events import EventRecorder
from chatprovider.controller.handlers import build_kopf_registry
from chatprovider.controller.reconciler import Reconciler
from chatprovider.domain.egress import EgressPolicy
from chatprovider.feed import Feed
from chatprovider.kube import KubeClient, KubeConfig
from chatprovider.kube.objects import ObjectSnapshot, ReferencedObjects
from chatprovider.logs import SecretValues
from chatprovider.registry import ObjectRef, Registry
from chatprovider.settings import OperatorSettings
from chatprovider.upstream.transport import Transports

__all__ = ["OperatorApp", "run_kopf"]

log = logging.getLogger(__name__)

#: Builds and starts the relay inside this loop; returns an async stop function.
RelayStarter = Callable[[Registry, ReferencedObjects, Transports, KubeClient],
                        Awaitable[Callable[[], Awaitable[None]]]]


async def run_kopf(registry: kopf.OperatorRegistry, settings: OperatorSettings,
                   stop_flag: asyncio.Event, liveness_port: int | None = None) -> None:
    await kopf.operator(
        registry=registry,
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        standalone=True,  # one active replica (Recreate); no peering objects needed
        # kopf would otherwise call getpass.getuser(), which fails for a uid with no passwd
        # entry (any non-root uid in a slim image).
        identity=cast(Any, f"{socket.gethostname()}/{os.getpid()}"),  # kopf's Identity NewType
        stop_flag=stop_flag,
        liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None,
    )


class OperatorApp:
    """Everything the operator runs, wired together inside one event loop."""

    def __init__(self, settings: OperatorSettings, relay: RelayStarter | None = None,
                 liveness_port: int | None = None, *,
                 transports: Callable[[EgressPolicy], Transports] = Transports,
                 secret_values: SecretValues | None = None) -> None:
        """``transports`` builds the upstream connection pools (tests pass one with a stub name
        resolver); ``secret_values`` collects the values of the Secrets read, for the log
        filter to mask."""
        self.settings = settings
        self._relay = relay
        self._transports = transports
        self._liveness_port = liveness_port
        self._secret_values = secret_values
        self.reconciler: Reconciler | None = None
        self.registry = Registry()

    async def run(self, stop_flag: asyncio.Event) -> None:
        config = KubeConfig.load(self.settings.kubeconfig)
        kube = KubeClient(config)
        transports = self._transports(self.settings.egress)
        objects = ReferencedObjects(kube, on_change=self._object_changed,
                                    watch_timeout=self.settings.watch_server_timeout,
                                    secret_values=self._secret_values,
                                    require_secret_label=self.settings.require_secret_label)
        recorder = EventRecorder(kube, instance=socket.gethostname())
        self.reconciler = Reconciler(self.settings, kube, Feed(self.registry, objects),
                                     transports, recorder)
        kopf_registry = build_kopf_registry(self.reconciler.observe, config=config,
                                            liveness=lambda: len(self.registry),
                                            settings=self.settings)
        stop_relay: Callable[[], Awaitable[None]] | None = None
        loop_task = asyncio.create_task(self.reconciler.run(), name="reconciler")
        kopf_stop = asyncio.Event()

        async def wind_down() -> None:
            """On stop, drain the relay and stop our own tasks before kopf stops: kopf waits
            (5 s) for every task created after it started, and would cancel relay streams
            that still have their grace period."""
            await stop_flag.wait()
            try:
                if stop_relay is not None:
                    await stop_relay()
                loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task
                if self.reconciler is not None:
                    await self.reconciler.stop()
                await objects.close()
            finally:
                kopf_stop.set()

        winder = asyncio.create_task(wind_down(), name="wind down")
        try:
            if self._relay is not None:
                stop_relay = await self._relay(self.registry, objects, transports, kube)
            await run_kopf(kopf_registry, self.settings, kopf_stop, self._liveness_port)
        finally:
            stop_flag.set()  # kopf may also end by itself (e.g. a fatal login error)
            await winder
            await transports.close()
            await kube.close()
            # Closed TLS transports finish closing on the next loop iterations; let them, so
            # that no socket outlives the loop (aiohttp's documented graceful shutdown).
            await asyncio.sleep(0.25)

    def _object_changed(self, ref: ObjectRef, snap: ObjectSnapshot) -> None:
        if self.reconciler is not None:
            self.reconciler.on_object_change(ref, snap)
