"""A TCP pass-through in front of a real server that keeps every byte it carries, each way.

Put between the relay and an upstream, it shows exactly what the upstream sent (so a test can
compare the relay's answer with it byte for byte, whatever ids and timestamps the upstream made
up) and exactly what the relay sent upstream (its headers). Bytes are recorded before they are
forwarded, so once a client has read an answer, the recording holds it.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

__all__ = ["HttpMessage", "RecordingProxy", "parse_messages"]


@dataclass
class HttpMessage:
    """One HTTP/1.1 request or response: its start line, headers (lower-case names), body."""

    start: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]


def parse_messages(data: bytes) -> list[HttpMessage]:
    """The complete messages in ``data`` (chunked or ``Content-Length`` bodies)."""
    messages, pos = [], 0
    while (end := data.find(b"\r\n\r\n", pos)) != -1:
        lines = data[pos:end].decode("latin-1").split("\r\n")
        headers = [(n.strip().lower(), v.strip())
                   for n, _, v in (line.partition(":") for line in lines[1:])]
        pos, body = end + 4, b""
        names = dict(headers)
        if names.get("transfer-encoding") == "chunked":
            while True:
                size_end = data.find(b"\r\n", pos)
                if size_end == -1:
                    return messages
                size = int(data[pos:size_end].split(b";")[0], 16)
                if size_end + 2 + size + 2 > len(data):
                    return messages
                body += data[size_end + 2:size_end + 2 + size]
                pos = size_end + 2 + size + 2
                if size == 0:
                    break
        else:
            length = int(names.get("content-length", "0"))
            if pos + length > len(data):
                return messages
            body, pos = data[pos:pos + length], pos + length
        messages.append(HttpMessage(lines[0], headers, body))
    return messages


@dataclass(eq=False)
class _Connection:
    sent: bytearray = field(default_factory=bytearray)
    """Client to server."""
    received: bytearray = field(default_factory=bytearray)
    """Server to client."""
    received_at: int = 0
    """When it last received bytes (the proxy's own counter)."""

    def complete(self) -> bool:
        """Every request sent on it has its whole response."""
        return len(parse_messages(bytes(self.received))) == \
            len(parse_messages(bytes(self.sent))) > 0


class RecordingProxy:
    """Listens on a free loopback port and forwards every connection to ``127.0.0.1:port``."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Condition()  # notified whenever bytes are recorded
        self._connections: list[_Connection] = []
        self._received = 0
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            record = _Connection()
            with self._lock:
                self._connections.append(record)
                self._sockets += [client, upstream]
            for source, sink, into in ((client, upstream, record.sent),
                                       (upstream, client, record.received)):
                thread = threading.Thread(target=self._pump, args=(source, sink, into, record),
                                          daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket, into: bytearray,
              record: _Connection) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    sink.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            with self._lock:
                into += data
                if into is record.received:
                    self._received += 1
                    record.received_at = self._received
                self._lock.notify_all()
            try:
                sink.sendall(data)
            except OSError:
                return

    def last_exchange(self, timeout: float = 10.0) -> tuple[HttpMessage, HttpMessage]:
        """The last request and its response, on the connection that last received a whole one.

        The relay may end its answer to the client (at the stream's last event) before the
        upstream's final chunk has passed through here, so this waits (bounded) for a complete
        exchange; a connection whose last request got no answer (the server closed it and the
        relay sent the request again on a new one) is passed over."""
        with self._lock:
            def last() -> _Connection | None:
                done = [c for c in self._connections if c.received_at and c.complete()]
                return max(done, key=lambda c: c.received_at, default=None)
            self._lock.wait_for(lambda: last() is not None, timeout)
            record = last()
            assert record is not None, ("no whole answer has gone through the proxy", [
                ([m.start for m in parse_messages(bytes(c.sent))],
                 [m.start for m in parse_messages(bytes(c.received))], bytes(c.received)[-200:])
                for c in self._connections])
            requests = parse_messages(bytes(record.sent))
            responses = parse_messages(bytes(record.received))
        return requests[-1], responses[-1]

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self._threads:
            thread.join(5)
