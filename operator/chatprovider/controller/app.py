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
from collections.abc import Awaitable, Callable

from chatprovider.api.chatmodel import CHATMODEL_PLURAL
from chatprovider.api.quota import QUOTA_PLURAL
from chatprovider.controller.chat_model_status import ChatModelStatusWriter
from chatprovider.controller.leader import LeaderElector, LeaseTiming
from chatprovider.controller.quota_status import QuotaStatusWriter
from chatprovider.controller.reconciler import Reconciler
from chatprovider.controller.status import StatusApplier
from chatprovider.counters import CounterStore, RedisCounterStore, open_store
from chatprovider.domain.egress import EgressPolicy
from chatprovider.feed import Feed
from chatprovider.kube import KubeClient, KubeConfig
from chatprovider.kube.events import EventRecorder, identity
from chatprovider.kube.objects import ObjectSnapshot, ReferencedObjects
from chatprovider.logs import SecretValues
from chatprovider.quotas import QuotaIndex
from chatprovider.registry import ObjectRef, Registry
from chatprovider.settings import OperatorSettings
from chatprovider.upstream.transport import Transports
from chatprovider.watch import ProviderWatch

__all__ = ["OperatorApp", "RelayStarter", "lease_namespace"]

log = logging.getLogger(__name__)

#: Builds and starts the relay inside this loop; returns an async stop function. ``ready`` says
#: whether the providers and quotas have been listed and the providers' Secrets read; the
#: :class:`QuotaIndex` holds the ChatQuotas the relay enforces, the :class:`CounterStore` their
#: counters (the operator's own: it reads them for ``status.usage``).
RelayStarter = Callable[[Registry, ReferencedObjects, Transports, KubeClient, Callable[[], bool],
                         QuotaIndex, CounterStore], Awaitable[Callable[[], Awaitable[None]]]]


def lease_namespace(settings: OperatorSettings) -> str:
    return settings.lease_namespace or os.environ.get("POD_NAMESPACE") or "default"


class OperatorApp:
    """Everything the operator runs, wired together inside one event loop."""

    def __init__(self, settings: OperatorSettings, relay: RelayStarter | None = None, *,
                 transports: Callable[[EgressPolicy], Transports] = Transports,
                 secret_values: SecretValues | None = None,
                 counters: CounterStore | None = None) -> None:
        """``transports`` builds the upstream connection pools (tests pass one with a stub name
        resolver); ``secret_values`` collects the values of the Secrets read, for the log
        filter to mask; ``counters`` is the quota counter store, read for the ChatQuotas'
        ``status.usage`` and to be shared with the embedded relay (whose in-memory counters
        are only readable here); by default the one the settings name (:func:`open_store`).
        The app closes it when it stops."""
        self.settings = settings
        self._relay = relay
        self._transports = transports
        self._secret_values = secret_values
        self.reconciler: Reconciler | None = None
        self.elector: LeaderElector | None = None
        self.watch: ProviderWatch | None = None
        self.registry = Registry()
        self.counters = counters if counters is not None else open_store(settings)
        self.quota_status: QuotaStatusWriter | None = None
        self.quotas = QuotaIndex()
        self.chat_model_status: ChatModelStatusWriter | None = None

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
                                   others={QUOTA_PLURAL: self.quotas.observe,
                                           CHATMODEL_PLURAL: self.registry.chat_models.observe})
        self.chat_model_status = ChatModelStatusWriter(kube, self.registry, may_write=may_write)
        self.quota_status = self._quota_status_writer(kube, may_write)
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
                                               self.watch.synced, self.quotas, self.counters)
            await self.watch.run(watch_stop, s.health_port or None)
        finally:
            stop_flag.set()  # kopf may also end by itself (e.g. a fatal login error)
            await winder
            leading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leading
            await transports.close()
            await self.counters.aclose()
            await kube.close()
            # Closed TLS transports finish closing on the next loop iterations; let them, so
            # that no socket outlives the loop (aiohttp's documented graceful shutdown).
            await asyncio.sleep(0.25)

    def _quota_status_writer(self, kube: KubeClient, may_write: Callable[[], bool]
                             ) -> QuotaStatusWriter:
        """Counters in Redis are read there; in memory, only when the relay is embedded (they
        are then this process's); a separate relay's memory cannot be read."""
        s = self.settings
        store: CounterStore | None = self.counters
        if isinstance(store, RedisCounterStore):
            source = store.where
        elif self._relay is not None:
            source = "the embedded relay's memory (this operator replica's requests only)"
        else:
            store, source = None, ""
        return QuotaStatusWriter(kube, s.namespaces, store, self.registry,
                                 interval=s.quota_status_interval,
                                 source=source, fail_open=s.quota_fail_open,
                                 may_write=may_write)

    async def _leading(self) -> None:
        """What the leader does: check providers, and keep the quotas' status current."""
        assert self.reconciler is not None
        quotas = asyncio.create_task(self._quota_status(), name="quota status")
        models = self._chat_model_status_task()
        try:
            await self.reconciler.run()
        finally:
            quotas.cancel()
            models.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await quotas
            with contextlib.suppress(asyncio.CancelledError):
                await models

    async def _quota_status(self) -> None:
        """The ChatQuotas' status, once the watch has listed the providers they govern."""
        assert self.watch is not None and self.quota_status is not None
        await self.watch.listed.wait()
        await self.quota_status.run()

    def _chat_model_status_task(self) -> asyncio.Task[None]:
        assert self.chat_model_status is not None
        return asyncio.create_task(self.chat_model_status.run(), name="chat model status")

    async def _lead(self, stop: asyncio.Event) -> None:
        """Lead while this replica holds the Lease (always, without leader election)."""
        if self.elector is None:
            task = asyncio.create_task(self._leading(), name="leading")
            await stop.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return
        await self.elector.run(self._leading, stop)

    def _object_changed(self, ref: ObjectRef, snap: ObjectSnapshot) -> None:
        if self.reconciler is not None:
            self.reconciler.on_object_change(ref, snap)
