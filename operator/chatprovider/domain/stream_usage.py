"""Asking a chat or completions stream for its usage when the caller did not, and hiding it (pure).

A quota settles a request with the tokens the upstream reports. Responses and Anthropic Messages
streams always report them in their last events; chat/completions and completions streams only
when the request sets ``stream_options.include_usage``. For a request under a quota whose caller
did not ask for it, the relay asks for it (:func:`request_usage`) and then hands the caller
exactly the stream it asked for (:class:`UsageFilter`):

* the usage chunk (``"choices": []`` with ``usage``, sent just before ``data: [DONE]``) is
  dropped;
* a ``usage`` member in any other chunk (``"usage": null`` in every chunk, as OpenAI and vLLM
  send with the option, or a count on the last chunk, as some servers put it) is removed, and
  only that event is re-serialised.

Every other event passes byte for byte. Events are forwarded whole: the filter holds the bytes
of an event until its end has arrived.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from chatprovider.domain.apis import Operation
from chatprovider.domain.request_body import RequestBody

__all__ = ["USAGE_OPERATIONS", "UsageFilter", "asks_usage", "request_usage"]

#: The operations whose streams report usage only when asked.
USAGE_OPERATIONS = (Operation.CHAT, Operation.COMPLETIONS)
_BOUNDARY = re.compile(rb"\r?\n\r?\n|\r\r")
_MAX_PENDING = 1 << 20  # an event larger than this is passed on unfiltered


def asks_usage(members: dict[str, Any]) -> bool:
    """Whether the request sets ``stream_options.include_usage`` to true."""
    options = members.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def request_usage(operation: Operation, body: RequestBody) -> RequestBody | None:
    """The body with ``stream_options.include_usage`` set, when ``operation`` streams usage only
    when asked, the request streams and the caller did not ask; else None (nothing to change).
    The new body is re-serialised (its ``with_model`` does it)."""
    if operation not in USAGE_OPERATIONS or not body.stream or asks_usage(body.members):
        return None
    options = body.members.get("stream_options")
    members = dict(body.members)
    members["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                 "include_usage": True}
    return replace(body, members=members, span=None)


def _filtered(event: bytes) -> bytes | None:
    """The event as the caller should see it (None: drop it)."""
    if b'"usage"' not in event:
        return event
    lines = event.decode("utf-8", "replace").splitlines()
    data = [line for line in lines if line.startswith("data:")]
    if len(data) != 1:
        return event
    try:
        payload = json.loads(data[0][5:])
    except ValueError:
        return event
    if not isinstance(payload, dict) or "usage" not in payload:
        return event
    if payload.get("choices") == []:
        return None
    del payload["usage"]
    text = "data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return "\n".join(text if line is data[0] else line for line in lines).encode()


class UsageFilter:
    """Feed it the upstream's chunks; it returns the bytes to forward (complete events only)."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk if self._pending else chunk
        out: list[bytes] = []
        pos = 0
        for match in _BOUNDARY.finditer(data):
            event, separator = data[pos:match.start()], match.group()
            pos = match.end()
            kept = _filtered(event) if event else event
            if kept is not None:
                out += [kept, separator]
        self._pending = data[pos:]
        if len(self._pending) > _MAX_PENDING:
            out.append(self._pending)
            self._pending = b""
        return b"".join(out)

    def flush(self) -> bytes:
        """What is left at the end of the stream (an event without its final blank line)."""
        rest, self._pending = self._pending, b""
        if not rest:
            return b""
        return _filtered(rest) or b""
