"""The relay as an object another program embeds: build it, ``await start()``, ``await stop()``.

::

    relay = Relay(settings, registry, objects, transports, kube_client)
    await relay.start()          # listening on settings.host:settings.port (relay.port)
    ...
    await relay.stop()           # readyz turns 503, in-flight requests get shutdown_grace

The relay owns neither the registry, the referenced objects, the transports nor the Kubernetes
client: the process that made them closes them after ``stop()``. Everything runs in the event
loop that calls ``start()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from chatprovider.counters.gate import QuotaGate
from chatprovider.domain.apis import Operation
from chatprovider.domain.ejection import EjectionPolicy
from chatprovider.kube.client import KubeClient
from chatprovider.kube.events import RELAY_COMPONENT, EventRecorder, identity
from chatprovider.kube.objects import ReferencedObjects
from chatprovider.quotas import QuotaIndex
from chatprovider.registry import Registry
from chatprovider.relay.auth import Access, KubernetesAccess, OpenAccess
from chatprovider.relay.catalog import CatalogCache
from chatprovider.relay.ejections import Ejections
from chatprovider.relay.forwarder import Forwarder
from chatprovider.relay.handlers import Handlers
from chatprovider.relay.metering import Metering
from chatprovider.relay.metrics import RelayMetrics
from chatprovider.relay.middleware import error_middleware
from chatprovider.relay.openapi import openapi_document
from chatprovider.relay.playground import mount_playground
from chatprovider.relay.recheck import RecheckSignal
from chatprovider.relay.target import Targets
from chatprovider.settings import REFRESH_ANNOTATION, AuthMode, RelaySettings
from chatprovider.upstream.transport import Transports

__all__ = ["Relay"]

log = logging.getLogger("chatprovider.relay")


class Relay:
    """The OpenAI-compatible relay over a :class:`~chatprovider.registry.Registry`."""

    def __init__(
        self,
        settings: RelaySettings,
        registry: Registry,
        objects: ReferencedObjects,
        transports: Transports,
        kube_client: KubeClient | None = None,
        *,
        ready: Callable[[], bool] | None = None,
        refresh_annotation: str = REFRESH_ANNOTATION,
        ejection_policy: EjectionPolicy | None = None,
        quotas: QuotaIndex | None = None,
        gate: QuotaGate | None = None,
    ) -> None:
        """``kube_client`` is required in ``kubernetes`` auth mode (TokenReview and
        SubjectAccessReview go through it); with it, passive health also asks the operator to
        re-check an ejected provider (by changing its ``refresh_annotation``, the operator's
        setting of that name) and posts Events. ``ready``, if given, is also consulted by
        ``/readyz`` (for example: the watch feed has listed the providers once).
        ``ejection_policy``: the numbers of passive health (the defaults of
        :class:`~chatprovider.domain.ejection.EjectionPolicy` otherwise). ``quotas`` and
        ``gate`` (both or neither): the ChatQuotas to enforce and the counters they use
        (docs/quotas.md); without them no quota is enforced."""
        self.settings = settings
        self.metrics = RelayMetrics(settings.caller_limit)
        policy = ejection_policy or EjectionPolicy()
        self.ejections = Ejections(
            registry, self.metrics, policy=policy,
            signal=None if kube_client is None else RecheckSignal(
                kube_client, refresh_annotation, policy.signal_interval),
            events=None if kube_client is None else EventRecorder(
                kube_client, identity(), component=RELAY_COMPONENT))
        access: Access
        if settings.auth_mode is AuthMode.KUBERNETES:
            if kube_client is None:
                raise ValueError("auth mode 'kubernetes' needs a KubeClient")
            access = KubernetesAccess(kube_client, settings)
        else:
            access = OpenAccess()
        self._extra_ready = ready
        self._started = False
        self._draining = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        catalog = CatalogCache(registry)
        self.metering = (Metering(quotas, gate, catalog, settings.reservation)
                         if quotas is not None and gate is not None else None)
        handlers = Handlers(settings, catalog, access, Targets(objects), Forwarder(transports),
                            self.metrics, self.is_ready, self.ejections, self.metering)
        self.app = _build_app(settings, handlers, self.metrics)
        if settings.playground:
            mount_playground(self.app, registry, access)

    def is_ready(self) -> bool:
        """Started, not stopping, and the embedder's ``ready`` check (if any) passes."""
        if not self._started or self._draining:
            return False
        return self._extra_ready() if self._extra_ready is not None else True

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``); only after :meth:`start`."""
        if self._port is None:
            raise RuntimeError("the relay is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port/v1``, the base URL for OpenAI clients."""
        host = self.settings.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/v1"

    async def start(self) -> None:
        """Listen on ``settings.host:settings.port``."""
        if self._runner is not None:
            raise RuntimeError("the relay is already started")
        s = self.settings
        if s.auth_mode is AuthMode.NONE:
            log.warning("RELAY AUTHENTICATION IS OFF (auth mode 'none'): anyone who can reach "
                        "%s:%s may use every Ready ChatProvider. Use it for local demos only.",
                        s.host, s.port)
        runner = web.AppRunner(
            self.app, handler_cancellation=True, access_log=None,
            shutdown_timeout=s.shutdown_grace, max_line_size=s.max_header_line,
            max_field_size=s.max_header_field, max_headers=s.max_headers,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, s.host, s.port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._draining = False
        self._started = True
        log.info("relay listening on %s:%d (auth mode %s)", s.host, self._port, s.auth_mode)

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish within ``shutdown_grace`` (then
        cancel them), close idle connections."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._draining = True
        await runner.cleanup()
        await self.ejections.close()
        if self.metering is not None:
            await self.metering.drain()
        self._started = False
        log.info("relay stopped")


def _build_app(settings: RelaySettings, h: Handlers, metrics: RelayMetrics) -> web.Application:
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[error_middleware(metrics, log_requests=settings.access_log)],
    )
    document = openapi_document(settings)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get("/healthz", h.healthz, allow_head=False)
    app.router.add_get("/readyz", h.readyz, allow_head=False)
    app.router.add_get("/metrics", h.metrics, allow_head=False)
    app.router.add_get("/openapi.json", openapi, allow_head=False)
    app.router.add_get("/v1/models", h.list_models, allow_head=False)
    app.router.add_get("/v1/models/{model:.+}", h.get_model, allow_head=False)
    for operation in Operation:
        app.router.add_post(operation.path, h.forwarding(operation))
    return app
