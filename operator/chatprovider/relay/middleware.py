"""The one place that turns failures into answers, and records every request.

Whatever a handler raises becomes an error answer in the envelope of the route's API
(:mod:`~chatprovider.domain.envelopes`: OpenAI's, or Anthropic's under ``/v1/messages``): an
:class:`~chatprovider.domain.openai_errors.OpenAIError` as it says, an aiohttp
``HTTPException`` (unknown route, wrong method, body over ``client_max_size``) with its status,
anything else as a 500 whose detail goes to the log only (type, never a message that could hold
a key). Then one metrics update and one access-log line per request, with no body and no header
value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from chatprovider.domain.apis import Api
from chatprovider.domain.envelopes import error_body
from chatprovider.domain.openai_errors import OpenAIError
from chatprovider.relay.exchange import Exchange, start_exchange
from chatprovider.relay.metrics import RelayMetrics

__all__ = ["error_middleware", "render"]

log = logging.getLogger("chatprovider.relay")
access_log = logging.getLogger("chatprovider.relay.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLIENT_CLOSED = 499

_HTTP_CODES = {
    404: ("unknown route", "not_found"),
    405: ("method not allowed on this route", "method_not_allowed"),
    413: ("the request body is larger than the limit", "request_too_large"),
}


def render(error: OpenAIError, api: Api) -> web.Response:
    response = web.Response(status=error.status, body=error_body(api, error),
                            content_type="application/json")
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def _from_http(exc: web.HTTPException) -> OpenAIError:
    message, code = _HTTP_CODES.get(exc.status, (exc.reason.lower(), "http_error"))
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return OpenAIError(exc.status, message, code, headers=headers)


def error_middleware(metrics: RelayMetrics, *, log_requests: bool) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        exchange = start_exchange(request, loop.time())
        status, reason = 500, None  # reason: the code of an error answer given here
        try:
            try:
                response = await handler(request)
            except OpenAIError as exc:
                reason = "upstream" if exc.raw is not None else exc.code or "error"
                response = render(exc, exchange.api)
                response.headers.update(exchange.quota_headers)  # an error under a quota
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                response = render(error := _from_http(exc), exchange.api)
                reason = error.code or "http_error"
            except asyncio.CancelledError:
                status = 200 if exchange.completed else CLIENT_CLOSED
                raise
            except Exception as exc:  # noqa: BLE001 - the one last-resort boundary
                if exchange.prepared:
                    raise
                log.error("unexpected %s while handling %s %s", type(exc).__name__,
                          request.method, request.path, exc_info=exc)
                response = render(OpenAIError(500, "internal error in the relay",
                                              "internal_error"), exchange.api)
                reason = "internal_error"
            status = response.status
            return response
        finally:
            _record(metrics, request, exchange, status, loop.time(), log_requests, reason)

    return middleware


def _record(metrics: RelayMetrics, request: web.Request, exchange: Exchange, status: int,
            now: float, log_requests: bool, reason: str | None = None) -> None:
    if request.path in ("/metrics", "/healthz", "/readyz", "/", "/v1/providers") or \
            request.path.startswith("/playground/"):
        return  # service and playground routes are not relayed requests
    ns, provider, model = exchange.namespace, exchange.provider, exchange.model
    elapsed = now - exchange.started
    metrics.requests.labels(ns, provider, model, str(status)).inc()
    if reason is not None:
        metrics.error_answers.labels(ns, provider, str(status), reason).inc()
    if provider:
        metrics.latency.labels(ns, provider).observe(elapsed)
        if exchange.first_token_at is not None:
            metrics.ttft.labels(ns, provider).observe(exchange.first_token_at - exchange.started)
        who = metrics.callers(exchange.user)
        metrics.caller_requests.labels(*who, ns, provider, model).inc()
        if exchange.usage is not None:
            for direction, count in (("prompt", exchange.usage.prompt_tokens),
                                     ("completion", exchange.usage.completion_tokens)):
                metrics.tokens.labels(ns, provider, model, direction).inc(count)
                metrics.caller_tokens.labels(*who, ns, provider, model, direction).inc(count)
    if log_requests:
        access_log.info(
            "%s %s %d %.1fms provider=%s model=%s user=%s stream=%s failure=%s attempts=%d",
            request.method, request.path, status, elapsed * 1000,
            f"{ns}/{provider}" if provider else "-", model or "-", exchange.user or "-",
            str(exchange.stream).lower(), exchange.failure or "-", exchange.attempts,
            extra={"fields": {"method": request.method, "path": request.path, "status": status,
                              "duration_ms": round(elapsed * 1000, 1), "namespace": ns,
                              "provider": provider, "model": model, "user": exchange.user,
                              "stream": exchange.stream, "failure": exchange.failure,
                              "attempts": exchange.attempts}},
        )
