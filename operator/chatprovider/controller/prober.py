"""One check of an endpoint over HTTP: models discovery and the optional test message.

The only module of the operator that talks to upstream servers. It returns a
:class:`~chatprovider.domain.probe.ProbeResult`; classification into conditions is pure
(:func:`chatprovider.domain.probe.assess`). The key is sent as ``Authorization: Bearer`` and
appears in no result, message or log line.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from chatprovider.api.v1alpha1 import ChatProviderSpec
from chatprovider.domain.apis import PROBED, Operation, probe_body
from chatprovider.domain.conditions import Reason
from chatprovider.domain.discovery import ModelEntry, ModelsShapeError, parse_models
from chatprovider.domain.endpoint import InvalidEndpoint, ResolvedEndpoint, resolve_endpoint
from chatprovider.domain.probe import CallOutcome, ProbeResult, worth_verifying
from chatprovider.domain.proxy import proxy_for
from chatprovider.domain.server_types import ModelsFallback, models_fallback, server_root
from chatprovider.upstream.failures import classify
from chatprovider.upstream.transport import TransportProfile, Transports

__all__ = ["USER_AGENT", "ProbeRequest", "endpoint_of", "probe"]

USER_AGENT = "chatprovider-operator/0.1"
_MAX_REDIRECTS = 3


@dataclass(frozen=True)
class ProbeRequest:
    """What to probe. ``api_key`` is secret: it is in no repr."""

    spec: ChatProviderSpec
    endpoint: ResolvedEndpoint | InvalidEndpoint
    """``spec.endpoint`` resolved, or why it cannot be (see :func:`endpoint_of`)."""
    api_key: str | None = field(repr=False)
    ca_pem: bytes | None = field(repr=False)
    references: tuple[Reason, str]


def endpoint_of(spec: ChatProviderSpec) -> ResolvedEndpoint | InvalidEndpoint:
    """``spec.endpoint`` resolved once per check, or the error that says why it cannot be."""
    try:
        return resolve_endpoint(spec.endpoint)
    except InvalidEndpoint as exc:
        return exc


async def probe(req: ProbeRequest, transports: Transports, body_limit: int) -> ProbeResult:
    spec, endpoint = req.spec, req.endpoint
    base = ProbeResult(references=req.references, static_models=tuple(spec.models.static),
                       allow=tuple(spec.models.allow))
    if isinstance(endpoint, InvalidEndpoint):
        return replace(base, endpoint_error=str(endpoint))
    if req.references[0] not in (Reason.SECRET_RESOLVED, Reason.NO_SECRET_REQUIRED):
        return base
    proxy = proxy_for(endpoint.host, spec.proxy.url, spec.proxy.no_proxy) if spec.proxy else None
    profile = TransportProfile(ca_pem=req.ca_pem,
                               insecure_skip_verify=spec.tls.insecure_skip_verify, proxy=proxy)
    session = transports.session(profile)
    headers = {h.name: h.value for h in spec.headers}
    headers.update({"User-Agent": USER_AGENT, "Accept": "application/json",
                    "Accept-Encoding": "identity"})
    if req.api_key:
        headers["Authorization"] = f"Bearer {req.api_key}"
    connect = spec.timeouts.connect.total_seconds()
    timeout = aiohttp.ClientTimeout(total=spec.timeouts.request.total_seconds() + connect,
                                    sock_connect=connect)
    call = _Caller(session, transports, endpoint, headers, timeout, body_limit, profile)
    models_call, route = None, base.models_route
    if spec.discovery.enabled:
        models_call = await call.models()
        fallback = models_fallback(spec.server_type)
        if fallback is not None and models_call.status in (404, 405):
            answer = await call.fallback_models(fallback)
            if answer.status == 200 and answer.models is not None:
                models_call, route = answer, fallback.route
    model = spec.verification.model if spec.verification.enabled else None
    wanted = bool(model)
    verify_call = None
    if model and worth_verifying(models_call):
        verify_call = await call.verify(model, spec.verification.max_tokens)
    api_answers: tuple[tuple[Operation, int | None], ...] = ()
    if models_call is not None and models_call.status == 200 and models_call.models:
        api_answers = await call.apis(models_call.models[0].id)
    return replace(base, models_call=models_call, models_route=route, verify_call=verify_call,
                   verification=wanted, api_answers=api_answers)


class _Caller:
    def __init__(self, session: aiohttp.ClientSession, transports: Transports,
                 endpoint: ResolvedEndpoint, headers: dict[str, str],
                 timeout: aiohttp.ClientTimeout, body_limit: int, profile: TransportProfile
                 ) -> None:
        self.session, self.transports, self.endpoint = session, transports, endpoint
        self.headers, self.timeout, self.body_limit = headers, timeout, body_limit
        self.profile = profile

    async def models(self) -> CallOutcome:
        return await self._model_list(self.endpoint.models_url, parse_models)

    async def fallback_models(self, fallback: ModelsFallback) -> CallOutcome:
        """The server type's own model list (``GET /api/tags`` of Ollama)."""
        return await self._model_list(server_root(self.endpoint.base_url) + fallback.path,
                                      fallback.parse)

    async def _model_list(self, url: str, parse: Callable[[Any], list[ModelEntry]]
                          ) -> CallOutcome:
        outcome, payload = await self._call("GET", url, None)
        if outcome.failure is not None or outcome.status != 200:
            return outcome
        try:
            models = tuple(parse(payload))
        except ModelsShapeError as exc:
            return replace(outcome, shape_error=str(exc))
        return replace(outcome, models=models)

    async def apis(self, model: str) -> tuple[tuple[Operation, int | None], ...]:
        """Which of the other operations the server answers: each probed at once with a request
        it refuses where it offers the route (:func:`~chatprovider.domain.apis.probe_body`)."""
        async def one(operation: Operation) -> tuple[Operation, int | None]:
            outcome, _ = await self._call("POST", operation.url(self.endpoint.base_url),
                                          probe_body(operation, model))
            return operation, outcome.status
        return tuple(await asyncio.gather(*(one(op) for op in PROBED)))

    async def verify(self, model: str, max_tokens: int) -> CallOutcome:
        body = {"model": model, "max_tokens": max_tokens, "stream": False,
                "messages": [{"role": "user", "content": "Reply with one word: ping"}]}
        outcome, payload = await self._call("POST", self.endpoint.chat_completions_url, body)
        if outcome.failure is None and outcome.status == 200:
            choices = payload.get("choices") if isinstance(payload, dict) else None
            if not isinstance(choices, list) or not choices:
                return replace(outcome,
                               shape_error="the answer is not an OpenAI chat completion")
        return outcome

    async def _call(self, method: str, url: str, body: Any) -> tuple[CallOutcome, Any]:
        start = time.monotonic()
        origin = urlsplit(url)[:2]
        try:
            for _ in range(_MAX_REDIRECTS + 1):
                host = urlsplit(url).hostname or ""
                self.transports.check_destination(host, self.profile)
                async with self.session.request(
                    method, url, json=body, headers=self.headers, timeout=self.timeout,
                    allow_redirects=False,
                ) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        target = str(resp.url.join(URL(resp.headers["Location"])))
                        if urlsplit(target)[:2] != origin:
                            return _fail(Reason.REDIRECT_REFUSED,
                                         f"redirect to another origin refused ({resp.status})",
                                         start), None
                        url = target
                        continue
                    raw = await resp.content.read(self.body_limit + 1)
                    latency = _ms(start)
                    if len(raw) > self.body_limit:
                        return CallOutcome(status=resp.status, latency_ms=latency,
                                           shape_error="the answer is larger than the limit"), None
                    try:
                        payload = json.loads(raw) if raw else None
                    except ValueError:
                        return CallOutcome(status=resp.status, latency_ms=latency,
                                           shape_error="the answer is not JSON"), None
                    return CallOutcome(status=resp.status, latency_ms=latency), payload
            return _fail(Reason.REDIRECT_REFUSED, "too many redirects", start), None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified, never re-raised with the key
            failure = classify(exc)
            return _fail(failure.kind.reason, failure.detail, start), None


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def _fail(reason: Reason, detail: str, start: float) -> CallOutcome:
    return CallOutcome(failure=reason, detail=detail, latency_ms=_ms(start))
