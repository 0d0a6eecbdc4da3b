"""The OpenAI-compatible routes of the dev server, and OpenAI's Responses and Anthropic's
Messages routes (``/v1/responses``, ``/v1/messages``, ``/v1/messages/count_tokens``), plus the
model list of the flavour's own API: Ollama's ``GET /api/tags``, TGI's ``GET /info`` (which
answer even when ``GET /v1/models`` is made to fail, as on servers that lack it).

Auth and the generic faults (hang, delays, error statuses, bad bodies) are applied before these
handlers by :mod:`.app`; the handlers validate the body and answer from the cached encodings.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .reply import plan_reply
from .state import body_of, snapshot_of, state_of
from .stream import send_events, send_stream
from .wire import (
    chat_chunk_tails,
    chat_completion_tail,
    document,
    embeddings_body,
    error_body,
    models_body,
    text_chunk_tails,
    text_completion_tail,
)
from .wire_apis import message_body, message_events, response_body, response_events

__all__ = ["add_routes", "error_response"]

_JSON = "application/json"


def error_response(
    status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An answer with the OpenAI error envelope."""
    return web.Response(
        status=status, body=error_body(status, message, code), content_type=_JSON,
        headers=headers,
    )


class _BadRequest(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _checked_body(request: web.Request, required: str) -> dict[str, Any]:
    """The JSON object body, with a string ``model`` known to the server (when strict) and the
    ``required`` member; raises :class:`_BadRequest` with a 400 or 404 otherwise."""
    body = body_of(request)
    if not isinstance(body, dict):
        raise _BadRequest(error_response(400, "The request body must be a JSON object."))
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest(error_response(400, "You must provide a model parameter."))
    if required not in body:
        raise _BadRequest(error_response(400, f"Missing required parameter: '{required}'."))
    state = state_of(request.app)
    snapshot = snapshot_of(request)
    if state.strict_models(snapshot) and model not in state.models(snapshot):
        raise _BadRequest(error_response(404, f"The model `{model}` does not exist."))
    return body


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and bool(options.get("include_usage"))


async def _chat(request: web.Request) -> web.StreamResponse:
    try:
        body = _checked_body(request, "messages")
    except _BadRequest as bad:
        return bad.response
    if not isinstance(body["messages"], list) or not body["messages"]:
        return error_response(400, "'messages' must be a non-empty array.")
    state = state_of(request.app)
    snapshot = snapshot_of(request)
    reply = plan_reply(body, snapshot.stream_frames)
    if body.get("stream") is True:
        tails = chat_chunk_tails(reply, _include_usage(body))
        return await send_stream(request, state, snapshot, b"chat.completion.chunk", tails)
    data = document(
        b"chat.completion", state.next_id(b"chatcmpl"), int(time.time()),
        chat_completion_tail(reply),
    )
    return web.Response(body=data, content_type=_JSON)


async def _completions(request: web.Request) -> web.StreamResponse:
    try:
        body = _checked_body(request, "prompt")
    except _BadRequest as bad:
        return bad.response
    state = state_of(request.app)
    snapshot = snapshot_of(request)
    reply = plan_reply(body, snapshot.stream_frames)
    if body.get("stream") is True:
        tails = text_chunk_tails(reply, _include_usage(body))
        return await send_stream(request, state, snapshot, b"text_completion", tails)
    data = document(
        b"text_completion", state.next_id(b"cmpl"), int(time.time()), text_completion_tail(reply)
    )
    return web.Response(body=data, content_type=_JSON)


async def _embeddings(request: web.Request) -> web.StreamResponse:
    try:
        body = _checked_body(request, "input")
    except _BadRequest as bad:
        return bad.response
    raw = body["input"]
    inputs = raw if isinstance(raw, list) else [raw]
    if not inputs:
        return error_response(400, "'input' must not be empty.")
    texts = [item if isinstance(item, str) else str(item) for item in inputs]
    return web.Response(body=embeddings_body(body["model"], texts), content_type=_JSON)


def _reply_to(body: dict[str, Any], messages: Any, limit: Any,
              request: web.Request) -> Any:
    """The chat reply to a Responses or Messages request (tools are not planned there)."""
    asked = {"model": body["model"], "messages": messages, "max_tokens": limit}
    return plan_reply(asked, snapshot_of(request).stream_frames)


async def _responses(request: web.Request) -> web.StreamResponse:
    try:
        body = _checked_body(request, "input")
    except _BadRequest as bad:
        return bad.response
    reply = _reply_to(body, body["input"], body.get("max_output_tokens"), request)
    rid = state_of(request.app).next_id(b"r").decode()
    if body.get("stream") is True:
        events = response_events(reply, rid, int(time.time()))
        return await send_events(request, snapshot_of(request), events)
    return web.Response(body=response_body(reply, rid, int(time.time())), content_type=_JSON)


async def _messages(request: web.Request) -> web.StreamResponse:
    try:
        body = _checked_body(request, "messages")
    except _BadRequest as bad:
        return bad.response
    if not isinstance(body.get("max_tokens"), int):
        return error_response(400, "max_tokens: Field required")
    reply = _reply_to(body, body["messages"], body["max_tokens"], request)
    mid = state_of(request.app).next_id(b"m").decode()
    if body.get("stream") is True:
        return await send_events(request, snapshot_of(request), message_events(reply, mid))
    return web.Response(body=message_body(reply, mid), content_type=_JSON)


async def _count_tokens(request: web.Request) -> web.StreamResponse:
    try:
        body = _checked_body(request, "messages")
    except _BadRequest as bad:
        return bad.response
    reply = _reply_to(body, body["messages"], None, request)
    return web.json_response({"input_tokens": reply.prompt_tokens})


async def _models(request: web.Request) -> web.StreamResponse:
    state = state_of(request.app)
    snapshot = snapshot_of(request)
    if snapshot.models_status == 405:
        raise web.HTTPMethodNotAllowed(request.method, ["POST"])
    if snapshot.models_status is not None:
        raise web.HTTPNotFound()
    flavour = state.flavour
    data = models_body(state.models(snapshot), flavour.owned_by, int(time.time()))
    return web.Response(body=data, content_type=_JSON)


async def _ollama_tags(request: web.Request) -> web.StreamResponse:
    models = state_of(request.app).models(snapshot_of(request))
    return web.json_response({"models": [{"name": m, "model": m, "size": 0} for m in models]})


async def _tgi_info(request: web.Request) -> web.StreamResponse:
    models = state_of(request.app).models(snapshot_of(request))
    return web.json_response({"model_id": models[0] if models else "", "version": "devserver"})


_NATIVE_MODEL_LISTS = {"ollama": ("/api/tags", _ollama_tags), "tgi": ("/info", _tgi_info)}


async def _health(request: web.Request) -> web.StreamResponse:
    flavour = state_of(request.app).flavour
    return web.Response(body=flavour.health_body, content_type="text/plain")


def add_routes(app: web.Application, health_path: str, flavour: str = "generic") -> None:
    """Register the routes on ``app`` (those of ``flavour``'s own API as well)."""
    app.router.add_get("/v1/models", _models, allow_head=False)
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_post("/v1/embeddings", _embeddings)
    app.router.add_post("/v1/responses", _responses)
    app.router.add_post("/v1/messages", _messages)
    app.router.add_post("/v1/messages/count_tokens", _count_tokens)
    app.router.add_get(health_path, _health, allow_head=False)
    if flavour in _NATIVE_MODEL_LISTS:
        path, handler = _NATIVE_MODEL_LISTS[flavour]
        app.router.add_get(path, handler, allow_head=False)
