"""The dev server's answers on OpenAI's Responses API and Anthropic's Messages API (pure).

The same deterministic :class:`~.reply.Reply` as chat completions, in each API's shape; streams
are ``event: <type>`` + ``data: {"type": "<type>", ...}`` events in each API's order (Responses
with ``sequence_number``, ``output_index`` and ``content_index``, so that the OpenAI SDK's
``responses.stream()`` helper works; Anthropic without ``ping``), and no ``[DONE]``.
"""

from __future__ import annotations

import json
from typing import Any

from .reply import Reply

__all__ = ["message_body", "message_events", "response_body", "response_events"]


def _event(kind: str, members: dict[str, Any]) -> bytes:
    data = json.dumps({"type": kind, **members}, separators=(",", ":"), ensure_ascii=False)
    return f"event: {kind}\ndata: {data}\n\n".encode()


def _text(reply: Reply) -> str:
    return reply.content or ""


# ---- Responses --------------------------------------------------------------------------------
def _response(reply: Reply, rid: str, created: int, done: bool) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if done:
        output = [{"type": "message", "id": "msg_" + rid, "status": "completed",
                   "role": "assistant", "content": [
                       {"type": "output_text", "text": _text(reply), "annotations": []}]}]
    body: dict[str, Any] = {
        "id": "resp_" + rid, "object": "response", "created_at": created,
        "status": "completed" if done else "in_progress", "model": reply.model,
        "output": output,
    }
    if done:
        body["usage"] = {"input_tokens": reply.prompt_tokens,
                         "output_tokens": reply.completion_tokens,
                         "total_tokens": reply.prompt_tokens + reply.completion_tokens}
    return body


def response_body(reply: Reply, rid: str, created: int) -> bytes:
    """A completed ``response`` object."""
    return json.dumps(_response(reply, rid, created, True), separators=(",", ":"),
                      ensure_ascii=False).encode()


def response_events(reply: Reply, rid: str, created: int) -> list[bytes]:
    """The events of a streamed response, ``response.created`` to ``response.completed``."""
    item_id = "msg_" + rid
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    item = {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant",
            "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    done = _response(reply, rid, created, True)
    steps: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": _response(reply, rid, created, False)}),
        ("response.in_progress", {"response": _response(reply, rid, created, False)}),
        ("response.output_item.added", {"output_index": 0, "item": item}),
        ("response.content_part.added", {**where, "part": part}),
        *(("response.output_text.delta", {**where, "delta": piece}) for piece in reply.pieces),
        ("response.output_text.done", {**where, "text": _text(reply)}),
        ("response.content_part.done", {**where, "part": {**part, "text": _text(reply)}}),
        ("response.output_item.done", {"output_index": 0, "item": done["output"][0]}),
        ("response.completed", {"response": done}),
    ]
    return [_event(kind, {"sequence_number": n, **members})
            for n, (kind, members) in enumerate(steps)]


# ---- Anthropic Messages -----------------------------------------------------------------------
def _stop_reason(reply: Reply) -> str:
    return "max_tokens" if reply.finish_reason == "length" else "end_turn"


def message_body(reply: Reply, mid: str) -> bytes:
    """A ``message`` object."""
    return json.dumps({
        "id": "msg_" + mid, "type": "message", "role": "assistant", "model": reply.model,
        "content": [{"type": "text", "text": _text(reply)}],
        "stop_reason": _stop_reason(reply), "stop_sequence": None,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens},
    }, separators=(",", ":"), ensure_ascii=False).encode()


def message_events(reply: Reply, mid: str) -> list[bytes]:
    """The events of a streamed message, ``message_start`` to ``message_stop``."""
    start: dict[str, Any] = {
        "id": "msg_" + mid, "type": "message", "role": "assistant", "model": reply.model,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": 0}}
    return [
        _event("message_start", {"message": start}),
        _event("content_block_start", {"index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
        *(_event("content_block_delta", {"index": 0,
                                         "delta": {"type": "text_delta", "text": piece}})
          for piece in reply.pieces),
        _event("content_block_stop", {"index": 0}),
        _event("message_delta", {"delta": {"stop_reason": _stop_reason(reply),
                                           "stop_sequence": None},
                                 "usage": {"output_tokens": reply.completion_tokens}}),
        _event("message_stop", {}),
    ]
