"""Reading a client's JSON request body and rewriting its ``model`` without re-serialising (pure).

The relay forwards the client's bytes unchanged except the value of the top-level ``model``
member, which becomes the upstream id. :func:`parse_body` walks the top-level object once (each
member value is decoded by the C scanner of :mod:`json`) and remembers where the ``model`` value
sits, so :meth:`RequestBody.with_model` splices the new value in: unknown fields, tool
definitions, ``stream_options``, number formatting and key order all reach the upstream as the
client wrote them. Only when ``model`` appears more than once (where parsers disagree on which
wins) is the body re-serialised, from what :func:`json.loads` would have kept.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from chatprovider.domain.openai_errors import OpenAIError

__all__ = ["RequestBody", "parse_body"]

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_scanstring: Any = json.decoder.scanstring  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class RequestBody:
    """A parsed request: the text as received, the members the relay needs, the model's span."""

    text: str = field(repr=False)
    model: str
    stream: bool
    span: tuple[int, int] | None = field(default=None, repr=False)
    """Where the ``model`` value (a JSON string token) sits in ``text``; None when re-serialising
    is needed."""
    members: dict[str, Any] = field(default_factory=dict, repr=False)

    def with_model(self, model: str) -> bytes:
        """The body to send upstream: ``model`` replaced, everything else untouched."""
        token = json.dumps(model, ensure_ascii=False)
        if self.span is not None:
            start, end = self.span
            return (self.text[:start] + token + self.text[end:]).encode()
        members = dict(self.members)
        members["model"] = model
        return json.dumps(members, ensure_ascii=False, separators=(",", ":")).encode()


def _bad(message: str, param: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, code="invalid_request_body", param=param)


def parse_body(raw: bytes, *, needs_model: bool = True) -> RequestBody:
    """Parse a request body; raises :class:`OpenAIError` (400) saying what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("the request body is not UTF-8") from None
    members, spans = _members(text)
    model = members.get("model")
    if needs_model and (not isinstance(model, str) or not model):
        raise _bad("the request body has no 'model' (a non-empty string)", "model")
    stream = members.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean", "stream")
    span = spans[0] if len(spans) == 1 else None
    return RequestBody(text, model if isinstance(model, str) else "", stream, span, members)


def _members(text: str) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """The top-level object's members, and the spans of every ``model`` value."""
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if text[pos:pos + 1] != "{":
        raise _bad("the request body must be a JSON object")
    members: dict[str, Any] = {}
    spans: list[tuple[int, int]] = []
    try:
        pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
        if text[pos:pos + 1] == "}":
            pos += 1
        else:
            while True:
                if text[pos:pos + 1] != '"':
                    raise ValueError("expected a member name")
                key, pos = _scanstring(text, pos + 1, True)
                pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
                if text[pos:pos + 1] != ":":
                    raise ValueError("expected ':'")
                pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
                value, end = _DECODER.raw_decode(text, pos)
                if key == "model":
                    spans.append((pos, end))
                members[key] = value
                pos = _WS.match(text, end).end()  # type: ignore[union-attr]
                sep = text[pos:pos + 1]
                if sep == "}":
                    pos += 1
                    break
                if sep != ",":
                    raise ValueError("expected ',' or '}'")
                pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
    except (ValueError, RecursionError):
        raise _bad("the request body is not valid JSON") from None
    if _WS.match(text, pos).end() != len(text):  # type: ignore[union-attr]
        raise _bad("the request body is not valid JSON")
    return members, spans
