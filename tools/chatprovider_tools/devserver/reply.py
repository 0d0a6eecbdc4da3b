"""What the dev server answers: a deterministic reply planned from the request (pure).

The text is a fixed sentence that names the model, cut into ``frames`` pieces (one piece per
streamed frame and per "token")::

    "Hello from <model>! This is a deterministic reply."

``max_tokens`` below the frame count truncates the reply (``finish_reason: length``). When the
request offers ``tools`` (and ``tool_choice`` is not ``"none"``), the reply is a call of the chosen
tool, or the first one, with arguments made up from its JSON schema.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Reply",
    "ToolCall",
    "count_prompt_tokens",
    "plan_reply",
    "reply_pieces",
    "split_evenly",
    "tool_arguments",
]

_SENTENCE = ("!", " This", " is", " a", " deterministic", " reply", ".")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call made by the reply."""

    id: str
    name: str
    arguments: str
    """The arguments as a JSON text (as OpenAI sends them)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A planned answer; hashable, so its encodings can be cached."""

    model: str
    pieces: tuple[str, ...]
    """Streamed pieces: content pieces, or the tool call's argument pieces."""
    finish_reason: str
    """``stop``, ``length`` or ``tool_calls``."""
    prompt_tokens: int
    tool_call: ToolCall | None = None

    @property
    def content(self) -> str | None:
        """The full message text (None for a tool call)."""
        return None if self.tool_call else "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        """One token per piece."""
        return len(self.pieces)

    def usage(self) -> dict[str, int]:
        """The OpenAI ``usage`` object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def split_evenly(items: Sequence[str], parts: int) -> tuple[str, ...]:
    """Join ``items`` into ``parts`` consecutive, nearly equal groups (``parts <= len(items)``)."""
    n = len(items)
    return tuple("".join(items[i * n // parts : (i + 1) * n // parts]) for i in range(parts))


def reply_pieces(model: str, frames: int) -> tuple[str, ...]:
    """The reply text for ``model`` cut into exactly ``frames`` (at least 1) pieces.

    With more frames than words the sentence goes on repeating its words.
    """
    frames = max(1, frames)
    words = [f"Hello from {model}", *_SENTENCE]
    if frames <= len(words):
        return split_evenly(words, frames)
    extra = [(" " + _SENTENCE[1 + i % 6].strip()) for i in range(frames - len(words))]
    return (*words, *extra)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping)
        )
    return ""


def count_prompt_tokens(messages: Any) -> int:
    """A cheap, deterministic token count: 3 per message plus its whitespace-separated words."""
    if isinstance(messages, str):
        return max(1, len(messages.split()))
    if not isinstance(messages, list):
        return 0
    total = 0
    for message in messages:
        total += 3
        if isinstance(message, Mapping):
            total += len(_text_of(message.get("content")).split())
        elif isinstance(message, str):
            total += len(message.split())
    return total


_DUMMY: dict[str, Any] = {
    "string": "example",
    "integer": 1,
    "number": 1.5,
    "boolean": True,
    "array": [],
    "object": {},
    "null": None,
}


def tool_arguments(parameters: Any) -> dict[str, Any]:
    """Arguments for a function with JSON schema ``parameters``: each required property (all
    properties when none is required) gets its first enum value or a dummy of its type."""
    if not isinstance(parameters, Mapping):
        return {}
    props = parameters.get("properties")
    if not isinstance(props, Mapping):
        return {}
    required = parameters.get("required")
    names = [n for n in required if n in props] if isinstance(required, list) else []
    args: dict[str, Any] = {}
    for name in names or list(props):
        schema = props[name] if isinstance(props[name], Mapping) else {}
        enum = schema.get("enum")
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        args[str(name)] = enum[0] if isinstance(enum, list) and enum else _DUMMY.get(
            str(kind), "example"
        )
    return args


def _chosen_function(tools: Any, tool_choice: Any) -> Mapping[str, Any] | None:
    if not isinstance(tools, list) or not tools or tool_choice == "none":
        return None
    functions: list[Mapping[str, Any]] = [
        t["function"]
        for t in tools
        if isinstance(t, Mapping) and isinstance(t.get("function"), Mapping)
    ]
    if isinstance(tool_choice, Mapping):
        chosen = tool_choice.get("function")
        wanted = chosen.get("name") if isinstance(chosen, Mapping) else None
        for function in functions:
            if function.get("name") == wanted:
                return function
    return functions[0] if functions else None


def _tool_call(function: Mapping[str, Any], frames: int) -> tuple[ToolCall, tuple[str, ...]]:
    name = str(function.get("name") or "tool")
    arguments = json.dumps(tool_arguments(function.get("parameters")), separators=(",", ":"))
    call_id = "call_" + hashlib.sha256(name.encode()).hexdigest()[:24]
    parts = max(1, min(frames, len(arguments)))
    return ToolCall(call_id, name, arguments), split_evenly(list(arguments), parts)


def plan_reply(body: Mapping[str, Any], frames: int) -> Reply:
    """Plan the answer to a chat completion request ``body`` (already known to name a model)."""
    model = str(body.get("model", ""))
    prompt_tokens = count_prompt_tokens(body.get("messages", body.get("prompt")))
    function = _chosen_function(body.get("tools"), body.get("tool_choice"))
    if function is not None:
        call, pieces = _tool_call(function, frames)
        return Reply(model, pieces, "tool_calls", prompt_tokens, call)
    pieces = reply_pieces(model, frames)
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < len(pieces):
        return Reply(model, pieces[:limit], "length", prompt_tokens)
    return Reply(model, pieces, "stop", prompt_tokens)
