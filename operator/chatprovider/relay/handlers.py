"""The relay's HTTP handlers: thin steps over routing, access, targets and the forwarder."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

from aiohttp import web

from chatprovider.domain import routing, virtual_models
from chatprovider.domain.apis import Operation, offers
from chatprovider.domain.ejection import routable
from chatprovider.domain.headers import caller_authorization, upstream_headers
from chatprovider.domain.openai_errors import OpenAIError, UpstreamFailure, from_routing
from chatprovider.domain.request_body import RequestBody, parse_body
from chatprovider.domain.routing import PROVIDER_HEADER, Catalog, ProviderRef, Route
from chatprovider.domain.virtual_models import ChatModelRef
from chatprovider.relay.answer import relay_answer
from chatprovider.relay.auth import Access, Caller
from chatprovider.relay.catalog import CatalogCache
from chatprovider.relay.ejections import Ejections
from chatprovider.relay.exchange import Exchange, exchange_of
from chatprovider.relay.forwarder import Forwarder
from chatprovider.relay.guard import StreamGuard
from chatprovider.relay.limiter import ProviderLimiter
from chatprovider.relay.metering import Metering
from chatprovider.relay.metrics import CONTENT_TYPE, RelayMetrics
from chatprovider.relay.origins import ResponseOrigins
from chatprovider.relay.streaming import relay_stream
from chatprovider.relay.target import Target, Targets
from chatprovider.settings import AuthMode, BareModelPolicy, RelaySettings
from chatprovider.upstream.connection import UpstreamResponse

__all__ = ["Handlers"]

log = logging.getLogger(__name__)



class Handlers:
    """One instance per relay; its bound methods are the aiohttp handlers."""

    def __init__(self, settings: RelaySettings, catalog: CatalogCache, access: Access,
                 targets: Targets, forwarder: Forwarder, metrics: RelayMetrics,
                 ready: Callable[[], bool], ejections: Ejections,
                 metering: Metering | None = None) -> None:
        self._settings = settings
        self._catalog = catalog
        self._access = access
        self._targets = targets
        self._forwarder = forwarder
        self._metrics = metrics
        self._limiter = ProviderLimiter(
            settings.provider_concurrency, settings.queue_timeout,
            on_busy=lambda k: metrics.busy.labels(k.namespace, k.name).inc())
        self._ready = ready
        self._origins = ResponseOrigins()
        self._ejections = ejections
        self._metering = metering
        self._draw: Callable[[], float] = random.random  # picks a ChatModel's weighted backend

    # -- service routes -----------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if not self._ready():
            raise OpenAIError(503, "the relay is not ready", code="not_ready")
        return web.json_response({"status": "ready"})

    async def metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self._metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    # -- models -------------------------------------------------------------------------------
    async def list_models(self, request: web.Request) -> web.Response:
        caller = await self._authenticate(request)
        catalog = self._catalog.current()
        allowed = await self._access.allowed(caller, catalog.ready_providers())
        data = [_model_object(r) for r in catalog.usable(lambda k: allowed.get(k, False))]
        data[:0] = await self._chat_model_objects(caller, catalog)
        return web.json_response({"object": "list", "data": data})

    async def _chat_model_objects(self, caller: Caller, catalog: Catalog
                                  ) -> list[dict[str, object]]:
        """The usable ChatModels the caller may use, for ``GET /v1/models``."""
        models = self._catalog.chat_models
        refs = [v.ref for v in models if virtual_models.usable(v.ref, v.spec, catalog)]
        allowed = await self._access.allowed(caller, refs)
        return [_chat_model_object(r) for r in refs if allowed.get(r, False)]

    async def get_model(self, request: web.Request) -> web.Response:
        caller = await self._authenticate(request)
        routes = await self._route(request, caller, request.match_info["model"], None)
        chat_model = exchange_of(request).chat_model
        if chat_model is not None:
            return web.json_response(_chat_model_object(chat_model))
        return web.json_response(_model_object(routes[0]))

    # -- forwarding ---------------------------------------------------------------------------
    def forwarding(self, operation: Operation) -> Callable[[web.Request],
                                                           Awaitable[web.StreamResponse]]:
        """The handler of ``operation``'s route: every operation is authenticated, routed,
        limited and relayed the same way."""
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._forward(request, operation)
        return handler

    async def _forward(self, request: web.Request, operation: Operation) -> web.StreamResponse:
        exchange = exchange_of(request)
        _check_content_type(request)
        if request.content_length is not None and \
                request.content_length > self._settings.max_body_bytes:
            raise _too_large(self._settings.max_body_bytes)
        caller = await self._authenticate(request)
        body = parse_body(await request.read())
        pin_header = request.headers.get(PROVIDER_HEADER)
        pin = _parse_pin(pin_header) if pin_header is not None else None
        if operation is Operation.RESPONSES:
            origin = self._origins.provider_of(body.members.get("previous_response_id"))
            pin = routing.continuation_pin(body.model, self._catalog.current(), pin, origin)
        routes = self._offering(await self._route(request, caller, body.model, pin), operation)
        routes = _routable(routes, self._ejections.out)
        exchange.stream = body.stream and operation.streams
        failure: UpstreamFailure | None = None
        for index, chosen in enumerate(routes):
            attempts = exchange.attempts
            try:
                if self._metering is None:
                    return await self._attempt(request, exchange, chosen, body, operation)
                async with self._metering.metered(caller, chosen.provider, operation, body,
                                                  exchange) as sent:
                    return await self._attempt(request, exchange, chosen, sent, operation)
            except UpstreamFailure as exc:
                self._metrics.upstream_failures.labels(
                    chosen.provider.namespace, chosen.provider.name, exc.kind.value).inc()
                exchange.failure = exc.kind.value
                if not exc.kind.before_send or index + 1 == len(routes):
                    raise
                log.info("provider %s failed before the request was sent (%s); trying %s",
                         chosen.provider, exc.kind.value, routes[index + 1].provider)
                failure = exc
            finally:
                if exchange.attempts > attempts:  # it reached the forwarding step: health
                    self._ejections.observe(chosen.provider, exchange.upstream_status,
                                            exchange.failure)
        raise failure or OpenAIError(503, "no provider could take the request")

    async def _attempt(self, request: web.Request, exchange: Exchange, chosen: Route,
                       body: RequestBody, operation: Operation) -> web.StreamResponse:
        key = chosen.provider
        view = self._catalog.view(key)
        if view is None or not view.ready:
            raise from_routing(routing.ProviderNotReady(f"provider {key} is not ready"))
        exchange.routed(key.namespace, key.name, chosen.model)
        target = await self._targets.target(view, operation)
        headers = upstream_headers(request.headers.items(), api_key=target.api_key,
                                   extra=target.headers, api=operation.api)
        in_flight = self._metrics.in_flight.labels(key.namespace, key.name)
        async with self._limiter.slot(key):
            in_flight.inc()
            try:
                resp = await self._forwarder.open(target, body.with_model(chosen.model), headers)
                exchange.upstream_status = resp.status
                ok = False
                try:
                    response = await self._respond(request, resp, target, exchange, key,
                                                   operation)
                    ok = True
                    if operation is Operation.RESPONSES and exchange.response_id:
                        self._origins.remember(exchange.response_id, key)
                    return response
                finally:
                    if ok and exchange.failure is None:
                        resp.release()  # read to the end: back to the pool
                    else:
                        resp.close()  # drops the connection, which cancels the upstream work
            finally:
                in_flight.dec()

    async def _respond(self, request: web.Request, resp: UpstreamResponse,
                       target: Target, exchange: Exchange, key: ProviderRef,
                       operation: Operation) -> web.StreamResponse:
        if exchange.stream and resp.status < 300 and resp.content_type == "text/event-stream":
            return await relay_stream(request, resp, target, exchange,
                                      self._settings.keepalive_interval,
                                      self._guard(request, exchange, key), operation)
        return await relay_answer(request, resp, target, exchange,
                                  self._settings.max_response_bytes)

    def _guard(self, request: web.Request, exchange: Exchange, key: ProviderRef) -> StreamGuard:
        """The limits of one stream: its maximum duration, and (in kubernetes auth mode) the
        caller's token and right to use ``key`` (or the ChatModel it was reached through)
        checked again every access-cache TTL."""
        s = self._settings
        authorization = _credentials(request)
        chat_model = exchange.chat_model

        async def recheck() -> None:
            caller = await self._access.authenticate(authorization)
            if chat_model is not None:
                allowed = (await self._access.allowed(caller, (chat_model,))).get(chat_model)
                what = f"model {chat_model}"
            else:
                allowed = (await self._access.allowed(caller, (key,))).get(key)
                what = f"provider {key}"
            if not allowed:
                raise OpenAIError(403, f"you may no longer use {what}", code="access_revoked")

        checks = s.auth_mode is AuthMode.KUBERNETES
        return StreamGuard(exchange.started, recheck=recheck if checks else None,
                           interval=s.access_cache_ttl, max_duration=s.max_stream_duration)

    # -- shared steps -------------------------------------------------------------------------
    async def _authenticate(self, request: web.Request) -> Caller:
        caller = await self._access.authenticate(_credentials(request))
        exchange_of(request).user = caller.username
        return caller

    async def _route(self, request: web.Request, caller: Caller, model: str,
                     pin: ProviderRef | None) -> tuple[Route, ...]:
        catalog = self._catalog.current()
        if PROVIDER_HEADER not in request.headers:  # a pin here is a Responses call's origin
            virtual = await self._virtual(request, caller, model, catalog, origin=pin)
            if virtual is not None:
                return virtual
        allowed = await self._access.allowed(caller, routing.candidates(model, catalog, pin))
        failover = self._settings.bare_model_policy is BareModelPolicy.FAILOVER
        try:
            return routing.route(model, catalog, lambda k: allowed.get(k, False), pin,
                                 failover=failover, listing_limit=self._settings.listing_limit)
        except routing.UnknownModel as exc:
            if not exc.candidates:
                exc.candidates = await self._listing(caller, catalog)
            raise from_routing(exc) from None
        except routing.RoutingError as exc:
            raise from_routing(exc) from None

    async def _virtual(self, request: web.Request, caller: Caller, model: str,
                       catalog: Catalog, origin: ProviderRef | None) -> tuple[Route, ...] | None:
        """The routes of the ChatModel ``model`` names, authorized by ``use`` on the ChatModel
        (not on its providers); None when it names none the caller may use."""
        models = self._catalog.chat_models
        found = virtual_models.parse_chat_model(model, models.named)
        if not found:
            return None
        allowed = await self._access.allowed(caller, found)
        try:
            ref = virtual_models.resolve(model, found, allowed)
            view = models.get(ref) if ref is not None else None
            if view is None:
                return None
            routes = virtual_models.plan(view.ref, view.spec, catalog, self._draw(), origin)
        except routing.RoutingError as exc:
            raise from_routing(exc) from None
        exchange_of(request).chat_model = view.ref
        return routes

    def _offering(self, routes: tuple[Route, ...], operation: Operation) -> tuple[Route, ...]:
        """``routes`` whose provider offers ``operation`` (as its last check found), or a 404
        ``api_not_offered`` naming what the first one offers."""
        kept = tuple(r for r in routes if offers(self._apis_of(r.provider), operation))
        if not kept:
            apis = ", ".join(self._apis_of(routes[0].provider))
            raise OpenAIError(404, f"provider {routes[0].provider} does not offer "
                              f"{operation.path} (it offers: {apis})", code="api_not_offered")
        return kept

    def _apis_of(self, key: ProviderRef) -> list[str]:
        view = self._catalog.view(key)
        return view.status.apis if view is not None else []

    async def _listing(self, caller: Caller, catalog: Catalog) -> tuple[str, ...]:
        allowed = await self._access.allowed(caller, catalog.ready_providers())
        return catalog.listing(lambda k: allowed.get(k, False), self._settings.listing_limit)


def _credentials(request: web.Request) -> str | None:
    return caller_authorization(request.headers.get("Authorization"),
                                request.headers.get("x-api-key"))


def _model_object(chosen: Route) -> dict[str, object]:
    return {"id": chosen.qualified, "object": "model", "created": 0,
            "owned_by": str(chosen.provider), "upstream_id": chosen.model}


def _chat_model_object(ref: ChatModelRef) -> dict[str, object]:
    return {"id": str(ref), "object": "model", "created": 0, "owned_by": ref.namespace}


def _routable(routes: tuple[Route, ...], out: set[ProviderRef]) -> tuple[Route, ...]:
    try:
        return routable(routes, out)
    except routing.RoutingError as exc:
        raise from_routing(exc) from None


def _parse_pin(header: str) -> ProviderRef:
    try:
        return routing.parse_pin(header)
    except routing.RoutingError as exc:
        raise from_routing(exc) from None


def _check_content_type(request: web.Request) -> None:
    ctype = request.content_type.lower()
    if request.headers.get("Content-Type") is None:
        return  # tolerated: the body must still be JSON
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise OpenAIError(415, "the request body must be JSON (Content-Type: application/json)",
                          code="unsupported_media_type")


def _too_large(limit: int) -> OpenAIError:
    return OpenAIError(413, f"the request body is larger than the limit of {limit} bytes",
                       code="request_too_large")

