"""Watching a server-sent-events stream as it is forwarded, without changing a byte (pure).

:class:`StreamObserver` is fed the upstream's chunks exactly as they arrive (an event may be
split across chunks, a chunk may hold many events). It tracks

* whether the bytes forwarded so far end on an event boundary (only there may the relay insert
  a ``: keep-alive`` comment without corrupting an event);
* when the first token arrives (the first event whose delta carries text or a tool call);
* the usage of the last event that reports one (``stream_options.include_usage``);
* whether ``data: [DONE]`` was seen.

Only events that contain ``"usage"`` are decoded; everything else is a byte search.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["StreamObserver", "Usage", "usage_of"]

_BOUNDARY = re.compile(rb"\r?\n\r?\n|\r\r")
_TOKEN = re.compile(
    rb'"(?:content|text|reasoning_content|reasoning|refusal)"\s*:\s*"[^"]|"tool_calls"\s*:\s*\['
)
_MAX_PENDING = 1 << 20  # an event larger than this is forwarded but not inspected


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts an upstream reported."""

    prompt_tokens: int
    completion_tokens: int


def usage_of(payload: Any) -> Usage | None:
    """The ``usage`` of a completion (or chunk) object, if it reports one."""
    if not isinstance(payload, dict):
        return None
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", 0)
    completion = usage.get("completion_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(max(prompt, 0), max(completion, 0))


class StreamObserver:
    """Feed it every forwarded chunk with :meth:`feed`."""

    __slots__ = ("_pending", "_overflow", "first_token", "usage", "done", "events")

    def __init__(self) -> None:
        self._pending = b""
        self._overflow = False
        self.first_token = False
        self.usage: Usage | None = None
        self.done = False
        self.events = 0

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
            if not self.first_token and _TOKEN.search(event):
                self.first_token = first = True
            if b'"usage"' in event:
                usage = usage_of(_data(event))
                if usage is not None:
                    self.usage = usage
            elif b"[DONE]" in event and _data_text(event).strip() == "[DONE]":
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
