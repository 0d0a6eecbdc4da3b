"""The standalone relay process (``chatprovider relay``): the watch of ChatProviders, ChatQuotas
and ChatModels, and the relay, in one event loop. It reads (its one write: passive health's
refresh annotation); every replica serves, and each is ready (``/readyz``) once it has listed the
providers, the quotas and the ChatModels and read the Secrets the providers reference (a replica
that started must never admit traffic no quota limits)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from chatprovider.api.chatmodel import CHATMODEL_PLURAL
from chatprovider.api.quota import QUOTA_PLURAL
from chatprovider.counters import QuotaGate, open_store
from chatprovider.feed import Feed
from chatprovider.kube import KubeClient, KubeConfig
from chatprovider.kube.objects import ReferencedObjects
from chatprovider.logs import SecretValues
from chatprovider.quotas import QuotaIndex
from chatprovider.registry import Registry
from chatprovider.relay.server import Relay
from chatprovider.settings import OperatorSettings, RelaySettings
from chatprovider.upstream.transport import Transports
from chatprovider.watch import ProviderWatch

__all__ = ["RelayApp"]

log = logging.getLogger(__name__)


class RelayApp:
    """The watch feeding a :class:`Relay`; ``settings`` gives the shared fields (scope, egress,
    watch timeouts), ``relay`` the relay's own."""

    def __init__(self, settings: OperatorSettings, relay: RelaySettings, *,
                 secret_values: SecretValues | None = None) -> None:
        self.settings, self.relay_settings = settings, relay
        self._secret_values = secret_values
        self.registry = Registry()
        self.quotas = QuotaIndex()
        self.relay: Relay | None = None

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        config = KubeConfig.load(s.kubeconfig, s.context)
        kube = KubeClient(config)
        transports = Transports(s.egress)
        objects = ReferencedObjects(kube, watch_timeout=s.watch_server_timeout,
                                    secret_values=self._secret_values,
                                    require_secret_label=s.require_secret_label)
        feed = Feed(self.registry, objects)

        def observe(event_type: str, body: Mapping[str, Any]) -> None:
            feed.observe(event_type, body)

        watch = ProviderWatch(s, config, kube, objects, observe,
                              liveness=lambda: len(self.registry),
                              others={QUOTA_PLURAL: self.quotas.observe,
                                      CHATMODEL_PLURAL: self.registry.chat_models.observe})
        store = open_store(s)
        self.relay = Relay(self.relay_settings, self.registry, objects, transports, kube,
                           ready=watch.synced, refresh_annotation=s.refresh_annotation,
                           quotas=self.quotas, gate=QuotaGate(store, fail_open=s.quota_fail_open))
        await self.relay.start()
        watch_stop = asyncio.Event()

        async def wind_down() -> None:
            await stop.wait()
            try:
                assert self.relay is not None
                await self.relay.stop()
            finally:
                watch_stop.set()

        winder = asyncio.create_task(wind_down(), name="wind down")
        try:
            await watch.run(watch_stop)
        finally:
            stop.set()
            await winder
            await objects.close()
            await store.aclose()
            await transports.close()
            await kube.close()
            await asyncio.sleep(0.25)  # let closed TLS transports finish (see OperatorApp.run)
