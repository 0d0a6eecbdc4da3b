"""The operator process: the ChatProvider (and ChatQuota) watch, the reconciler (while this
replica leads), and (optionally) the embedded relay, in one event loop.

Every replica watches, so its registry is current and its embedded relay serves; only the
leader (:mod:`.leader`) checks providers and writes status and Events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from chatprovider.api.quota import QUOTA_PLURAL
from chatprovider.controller.events import EventRecorder
from chatprovider.controller.leader import LeaderElector, LeaseTiming
from chatprovider.controller.reconciler import Reconciler
from chatprovider.controller.status import StatusApplier
from chatprovider.domain.egress import EgressPolicy
from chatprovider.feed import Feed
from chatprovider.kube import KubeClient, KubeConfig
from chatprovider.kube.objects import ObjectSnapshot, ReferencedObjects
from chatprovider.logs import SecretValues
from chatprovider.quotas import QuotaIndex
from chatprovider.registry import ObjectRef, Registry
from chatprovider.settings import OperatorSettings
from chatprovider.upstream.transport import Transports
from chatprovider.watch import ProviderWatch

__all__ = ["OperatorApp", "RelayStarter", "identity", "lease_namespace"]

log = logging.getLogger(__name__)

#: Builds and starts the relay inside this loop; returns an async stop function. ``ready`` says
#: whether the providers and quotas have been listed and the providers' Secrets read; the
#: :class:`QuotaIndex` holds the ChatQuotas the relay enforces.
RelayStarter = Callable[[Registry, ReferencedObjects, Transports, KubeClient, Callable[[], bool],
                         QuotaIndex], Awaitable[Callable[[], Awaitable[None]]]]


def identity() -> str:
    """This replica's name in the Lease: the pod's name when the chart sets ``POD_ID``."""
    return os.environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}"


def lease_namespace(settings: OperatorSettings) -> str:
    return settings.lease_namespace or os.environ.get("POD_NAMESPACE") or "default"


class OperatorApp:
    """Everything the operator runs, wired together inside one event loop."""

    def __init__(self, settings: OperatorSettings, relay: RelayStarter | None = None, *,
                 transports: Callable[[EgressPolicy], Transports] = Transports,
                 secret_values: SecretValues | None = None) -> None:
        """``transports`` builds the upstream connection pools (tests pass one with a stub name
        resolver); ``secret_values`` collects the values of the Secrets read, for the log
        filter to mask."""
        self.settings = settings
        self._relay = relay
        self._transports = transports
        self._secret_values = secret_values
        self.reconciler: Reconciler | None = None
        self.elector: LeaderElector | None = None
        self.watch: ProviderWatch | None = None
        self.registry = Registry()
        self.quotas = QuotaIndex()

    async def run(self, stop_flag: asyncio.Event) -> None:
        s = self.settings
        config = KubeConfig.load(s.kubeconfig, s.context)
        kube = KubeClient(config)
        transports = self._transports(s.egress)
        objects = ReferencedObjects(kube, on_change=self._object_changed,
                                    watch_timeout=s.watch_server_timeout,
                                    secret_values=self._secret_values,
                                    require_secret_label=s.require_secret_label)
        me = identity()
        if s.leader_election:
            self.elector = LeaderElector(
                kube, lease_namespace(s), s.lease_name, me,
                LeaseTiming(s.lease_duration, s.lease_renew_deadline, s.lease_retry_period))
        elector = self.elector
        may_write = (lambda: elector.leading) if elector is not None else (lambda: True)
        applier = StatusApplier(kube, may_write=may_write)
        self.reconciler = Reconciler(s, Feed(self.registry, objects), transports, applier,
                                     EventRecorder(kube, instance=me, may_post=may_write))
        self.watch = ProviderWatch(s, config, kube, objects, self.reconciler.observe,
                                   liveness=lambda: len(self.registry),
                                   others={QUOTA_PLURAL: self.quotas.observe})
        stop_relay: Callable[[], Awaitable[None]] | None = None
        watch_stop = asyncio.Event()
        leading = asyncio.create_task(self._lead(stop_flag), name="leader election")

        async def wind_down() -> None:
            """On stop: drain the relay, stop checking (releasing the Lease), then the watches.
            kopf waits (5 s) for every task created after it started, and would cancel relay
            streams that still have their grace period."""
            await stop_flag.wait()
            try:
                if stop_relay is not None:
                    await stop_relay()
                with contextlib.suppress(asyncio.CancelledError):
                    await leading
                await objects.close()
            finally:
                watch_stop.set()

        winder = asyncio.create_task(wind_down(), name="wind down")
        try:
            if self._relay is not None:
                stop_relay = await self._relay(self.registry, objects, transports, kube,
                                               self.watch.synced, self.quotas)
            await self.watch.run(watch_stop, s.health_port or None)
        finally:
            stop_flag.set()  # kopf may also end by itself (e.g. a fatal login error)
            await winder
            leading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leading
            await transports.close()
            await kube.close()
            # Closed TLS transports finish closing on the next loop iterations; let them, so
            # that no socket outlives the loop (aiohttp's documented graceful shutdown).
            await asyncio.sleep(0.25)

    async def _lead(self, stop: asyncio.Event) -> None:
        """Run the reconciler while this replica leads (always, without leader election)."""
        assert self.reconciler is not None
        reconciler = self.reconciler
        if self.elector is None:
            task = asyncio.create_task(reconciler.run(), name="reconciler")
            await stop.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return
        await self.elector.run(reconciler.run, stop)

    def _object_changed(self, ref: ObjectRef, snap: ObjectSnapshot) -> None:
        if self.reconciler is not None:
            self.reconciler.on_object_change(ref, snap)
