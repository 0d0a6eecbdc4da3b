"""HTTP/1.1 on the wire: encoding a request once, and an incremental response parser.

The parser handles what the servers under test send (``Content-Length``, chunked, or a body
delimited by the end of the connection) and, for ``text/event-stream`` answers, notes the
arrival time of every server-sent event (an event ends with a blank line).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ParseError", "Response", "ResponseParser", "encode_request"]


def encode_request(method: str, host: str, path: str, body: bytes = b"",
                   headers: dict[str, str] | None = None) -> bytes:
    """The bytes of one keep-alive request, built once and sent many times."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive",
             "Accept-Encoding: identity"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ParseError(Exception):
    """The server sent something that is not HTTP/1.1."""


@dataclass(slots=True)
class Response:
    """What one response looked like; times are ``loop.time()`` values."""

    status: int = 0
    body_bytes: int = 0
    keep_alive: bool = True
    events: list[float] = field(default_factory=list)
    """Arrival time of each SSE event (filled only when events are tracked)."""
    reads_with_events: int = 0
    """Socket reads that carried at least one event end (= events when nothing is coalesced)."""
    done_seen: bool = False
    """``data: [DONE]`` arrived."""
    tail: bytes = b""


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _TO_CLOSE, _DONE = range(8)


class ResponseParser:
    """Feed it socket reads; :meth:`feed` returns True once the response is complete."""

    __slots__ = ("_buf", "_left", "_prev_nl", "_state", "_track", "response")

    def __init__(self, track_events: bool = False) -> None:
        self._track = track_events
        self._state = _HEAD
        self._buf = b""
        self._left = 0
        self._prev_nl = False
        self.response = Response()

    def feed(self, data: bytes, now: float) -> bool:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    self._buf = buf
                    return False
                self._head(buf[:end])
                buf = buf[end + 4:]
            elif state == _LENGTH:
                take = buf[:self._left]
                self._body(take, now)
                self._left -= len(take)
                buf = buf[len(take):]
                if self._left == 0:
                    self._state = _DONE
                    return True
                return False
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    self._buf = buf
                    return False
                try:
                    size = int(buf[:end].split(b";", 1)[0], 16)
                except ValueError:
                    raise ParseError("bad chunk size") from None
                buf = buf[end + 2:]
                self._left = size
                self._state = _CHUNK_DATA if size else _TRAILER
            elif state == _CHUNK_DATA:
                if not buf:
                    return False
                take = buf[:self._left]
                self._body(take, now)
                self._left -= len(take)
                buf = buf[len(take):]
                if self._left == 0:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(buf) < 2:
                    self._buf = buf
                    return False
                buf = buf[2:]
                self._state = _CHUNK_SIZE
            elif state == _TRAILER:
                if buf.startswith(b"\r\n"):
                    self._state = _DONE
                    return True
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    self._buf = buf
                    return False
                self._state = _DONE
                return True
            elif state == _TO_CLOSE:
                self._body(buf, now)
                return False
            else:
                return True

    def close(self, now: float) -> bool:
        """The connection ended; True if that completes a close-delimited body."""
        if self._state == _TO_CLOSE:
            self._state = _DONE
            return True
        return self._state == _DONE

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ParseError("not an HTTP/1.x status line")
        r = self.response
        r.status = int(parts[1])
        length: int | None = None
        chunked = False
        r.keep_alive = parts[0] == b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            v = value.strip().lower()
            if key == b"content-length":
                length = int(v)
            elif key == b"transfer-encoding":
                chunked = b"chunked" in v
            elif key == b"connection":
                r.keep_alive = v != b"close"
        if chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            self._left = length
            self._state = _LENGTH if length else _DONE
        elif r.status in (204, 304) or 100 <= r.status < 200:
            self._state = _DONE
        else:
            self._state = _TO_CLOSE
            r.keep_alive = False

    def _body(self, data: bytes, now: float) -> None:
        if not data:
            return
        r = self.response
        r.body_bytes += len(data)
        if not self._track:
            return
        ends = data.count(b"\n\n")
        ends += data.count(b"\r\n\r\n")
        if self._prev_nl and data[:1] == b"\n":
            ends += 1
        self._prev_nl = data[-1:] == b"\n"
        if ends:
            r.events.extend([now] * ends)
            r.reads_with_events += 1
        tail = r.tail + data
        r.tail = tail[-32:]
        if b"[DONE]" in tail:
            r.done_seen = True

    @property
    def complete(self) -> bool:
        return self._state == _DONE
