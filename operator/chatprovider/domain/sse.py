"""Watching a server-sent-events stream as it is forwarded, without changing a byte (pure).

:class:`StreamObserver` is fed the upstream's chunks exactly as they arrive (an event may be
split across chunks, a chunk may hold many events). It tracks

* whether the bytes forwarded so far end on an event boundary (only there may the relay insert
  a ``: keep-alive`` comment without corrupting an event);
* when the first token arrives (the first event whose delta carries text or a tool call), and
  how many such events have passed (:attr:`StreamObserver.token_events`: what a stream cut
  short is charged when it reported no usage, about one token each);
* the usage the events report (chat's last chunk with ``stream_options.include_usage``,
  Responses' ``response.completed``, Anthropic's ``message_start`` then ``message_delta``: each
  count is the latest reported);
* the id of the response a Responses stream makes (its ``response.created`` event);
* whether the stream finished: chat's ``data: [DONE]``, Responses' ``response.completed``
  (``.incomplete``, ``.failed``), Anthropic's ``message_stop``.

Only events that contain ``"usage"`` are decoded; everything else is a byte search.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["StreamObserver", "Usage", "response_id_of", "usage_of"]

_BOUNDARY = re.compile(rb"\r?\n\r?\n|\r\r")
_TOKEN = re.compile(
    rb'"(?:content|text|reasoning_content|reasoning|refusal|delta|partial_json)"\s*:\s*"[^"]'
    rb'|"tool_calls"\s*:\s*\['
)
_FINISHED = re.compile(
    rb'"type"\s*:\s*"(?:message_stop|response\.(?:completed|incomplete|failed))"')
_MAX_PENDING = 1 << 20  # an event larger than this is forwarded but not inspected


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts an upstream reported."""

    prompt_tokens: int
    completion_tokens: int


def _count(usage: dict[str, Any], *names: str) -> int | None:
    values = [usage.get(name) for name in names]
    counts = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    return max(sum(counts), 0) if counts else None


def _counts(payload: Any) -> tuple[int | None, int | None]:
    """Prompt and completion tokens reported by an answer or an event (None: not reported).

    The ``usage`` object is the payload's own, or that of the ``response`` (Responses' stream
    events) or ``message`` (Anthropic's ``message_start``) it carries. OpenAI names the counts
    ``prompt_tokens``/``completion_tokens``, Responses and Anthropic ``input_tokens``/
    ``output_tokens``; Anthropic's ``input_tokens`` leaves out the prompt-cache reads and writes,
    which are added so that "prompt" means the whole prompt for every API."""
    if not isinstance(payload, dict):
        return None, None
    usage = payload.get("usage")
    for name in ("response", "message"):
        inner = payload.get(name)
        if not isinstance(usage, dict) and isinstance(inner, dict):
            usage = inner.get("usage")
    if not isinstance(usage, dict):
        return None, None
    prompt = _count(usage, "prompt_tokens")
    if prompt is None:
        prompt = _count(usage, "input_tokens", "cache_read_input_tokens",
                        "cache_creation_input_tokens")
    completion = _count(usage, "completion_tokens")
    if completion is None:
        completion = _count(usage, "output_tokens")
    return prompt, completion


def response_id_of(payload: Any) -> str | None:
    """The ``id`` of a Responses answer, or of the response a stream event carries."""
    if isinstance(payload, dict) and isinstance(payload.get("response"), dict):
        payload = payload["response"]
    if isinstance(payload, dict) and payload.get("object") == "response":
        rid = payload.get("id")
        return rid if isinstance(rid, str) and rid else None
    return None


def usage_of(payload: Any) -> Usage | None:
    """The usage of an answer (or event), if it reports any; a missing count is 0."""
    prompt, completion = _counts(payload)
    if prompt is None and completion is None:
        return None
    return Usage(prompt or 0, completion or 0)


class StreamObserver:
    """Feed it every forwarded chunk with :meth:`feed`."""

    __slots__ = ("_pending", "_overflow", "_prompt", "_completion", "first_token", "done",
                 "events", "response_id", "token_events")

    def __init__(self) -> None:
        self._pending = b""
        self._overflow = False
        self._prompt: int | None = None
        self._completion: int | None = None
        self.first_token = False
        self.done = False
        self.events = 0
        self.response_id: str | None = None
        self.token_events = 0
        """Events that carried a token (text or a tool call)."""

    @property
    def usage(self) -> Usage | None:
        """The latest count of each kind reported so far, if any."""
        if self._prompt is None and self._completion is None:
            return None
        return Usage(self._prompt or 0, self._completion or 0)

    @property
    def at_boundary(self) -> bool:
        """Whether the forwarded bytes end between two events."""
        return not self._pending and not self._overflow

    def feed(self, chunk: bytes) -> bool:
        """Observe ``chunk``; True when it completed the first event that carries a token."""
        data = self._pending + chunk if self._pending else chunk
        parts = _BOUNDARY.split(data)
        tail = parts.pop()
        first = False
        for event in parts:
            if self._overflow:  # the end of an event too large to inspect
                self._overflow = False
                continue
            if not event:
                continue
            self.events += 1
            if _TOKEN.search(event):
                self.token_events += 1
                if not self.first_token:
                    self.first_token = first = True
            if b'"usage"' in event:
                prompt, completion = _counts(_data(event))
                if prompt is not None:
                    self._prompt = prompt
                if completion is not None:
                    self._completion = completion
            if self.response_id is None and b'"response.created"' in event:
                self.response_id = response_id_of(_data(event))
            if b"[DONE]" in event and _data_text(event).strip() == "[DONE]":
                self.done = True
            elif _FINISHED.search(event):
                self.done = True
        if len(tail) > _MAX_PENDING:
            self._pending, self._overflow = b"", True
        else:
            self._pending = tail
        return first


def _data_text(event: bytes) -> str:
    lines = []
    for line in event.decode("utf-8", "replace").splitlines():
        if line.startswith("data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(" ") else value)
    return "\n".join(lines)


def _data(event: bytes) -> Any:
    try:
        return json.loads(_data_text(event))
    except ValueError:
        return None
