"""OpenAI wire format of the dev server's answers, encoded to bytes (pure, cached).

Everything that depends only on the planned :class:`~.reply.Reply` is encoded once and cached;
a request only splices in its own ``id`` and ``created``. Each encoded answer is a *tail*: the
JSON object after its ``"id"``, ``"object"`` and ``"created"`` members, which :func:`frame` and
:func:`document` put in front.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from .reply import Reply

__all__ = [
    "DONE",
    "chat_completion_tail",
    "chat_chunk_tails",
    "document",
    "embeddings_body",
    "error_body",
    "frame",
    "models_body",
    "text_completion_tail",
    "text_chunk_tails",
]

DONE = b"data: [DONE]\n\n"
"""The last SSE event of a stream."""


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _tail(members: dict[str, Any]) -> bytes:
    """``members`` as the rest of a JSON object: ``"a":1,"b":2}``."""
    return _dumps(members)[1:]


def document(obj: bytes, request_id: bytes, created: int, tail: bytes) -> bytes:
    """A whole JSON document: ``{"id":…,"object":obj,"created":…,`` + ``tail``."""
    return b'{"id":"%s","object":"%s","created":%d,%s' % (request_id, obj, created, tail)


def frame(obj: bytes, request_id: bytes, created: int, tail: bytes) -> bytes:
    """One SSE event carrying :func:`document`."""
    return b'data: {"id":"%s","object":"%s","created":%d,%s\n\n' % (
        request_id, obj, created, tail
    )


def _message(reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_call is not None:
        call = reply.tool_call
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
        ]
    return message


@lru_cache(maxsize=512)
def chat_completion_tail(reply: Reply) -> bytes:
    """Tail of a ``chat.completion`` (non-streamed answer) with ``usage``."""
    return _tail(
        {
            "model": reply.model,
            "choices": [
                {
                    "index": 0,
                    "message": _message(reply),
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": reply.usage(),
        }
    )


def _chunk(model: str, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    return _tail(
        {
            "model": model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
    )


@lru_cache(maxsize=512)
def chat_chunk_tails(reply: Reply, include_usage: bool) -> tuple[bytes, ...]:
    """Tails of the ``chat.completion.chunk`` events of a streamed answer, in order: the role,
    one per piece, the finish reason, then (with ``include_usage``) the usage chunk."""
    model = reply.model
    call = reply.tool_call
    if call is None:
        tails = [_chunk(model, {"role": "assistant", "content": ""})]
        tails += [_chunk(model, {"content": piece}) for piece in reply.pieces]
    else:
        head = {"index": 0, "id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": ""}}
        tails = [_chunk(model, {"role": "assistant", "content": None, "tool_calls": [head]})]
        tails += [
            _chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            for piece in reply.pieces
        ]
    tails.append(_chunk(model, {}, reply.finish_reason))
    if include_usage:
        tails.append(_tail({"model": model, "choices": [], "usage": reply.usage()}))
    return tuple(tails)


@lru_cache(maxsize=256)
def text_completion_tail(reply: Reply) -> bytes:
    """Tail of a legacy ``text_completion`` (``POST /v1/completions``)."""
    choice = {"index": 0, "text": reply.content or "", "logprobs": None,
              "finish_reason": reply.finish_reason}
    return _tail({"model": reply.model, "choices": [choice], "usage": reply.usage()})


@lru_cache(maxsize=256)
def text_chunk_tails(reply: Reply, include_usage: bool) -> tuple[bytes, ...]:
    """Tails of a streamed legacy completion: one per piece, then the finish reason."""
    def choice(text: str, finish: str | None) -> bytes:
        return _tail({"model": reply.model, "choices": [
            {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]})

    tails = [choice(piece, None) for piece in reply.pieces]
    tails.append(choice("", reply.finish_reason))
    if include_usage:
        tails.append(_tail({"model": reply.model, "choices": [], "usage": reply.usage()}))
    return tuple(tails)


def models_body(models: tuple[str, ...], owned_by: str, created: int) -> bytes:
    """``GET /v1/models``: an OpenAI ``list`` of ``model`` objects."""
    return _dumps(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": created, "owned_by": owned_by}
                for m in models
            ],
        }
    )


def _vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 127.5 - 1.0, 6) for i in range(dimensions)]


def embeddings_body(model: str, inputs: list[str], dimensions: int = 8) -> bytes:
    """``POST /v1/embeddings``: one deterministic vector per input (a hash of its text)."""
    tokens = sum(max(1, len(text.split())) for text in inputs)
    return _dumps(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _vector(text, dimensions)}
                for i, text in enumerate(inputs)
            ],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    408: ("timeout_error", None),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    """The OpenAI error envelope ``{"error": {"message", "type", "param", "code"}}``; ``type``
    (and ``code``, unless given) follow from the HTTP status."""
    kind, default_code = _ERROR_KINDS.get(
        status, ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    )
    return _dumps(
        {"error": {"message": message, "type": kind, "param": None,
                   "code": code if code is not None else default_code}}
    )
