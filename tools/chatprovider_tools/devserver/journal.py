"""The request journal: what arrived at the dev server, and how each request ended.

The server thread writes, the test thread reads; every access goes through one lock. A request
ends in one of three ways: ``answered`` (the handler returned), ``cancelled`` (the client went
away before the answer was complete) or ``failed`` (the server aborted it on purpose, as with
``cut_stream_after``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Journal", "Outcome", "RecordedRequest"]

Outcome = Literal["pending", "answered", "cancelled", "aborted"]


@dataclass(slots=True, eq=False)
class RecordedRequest:
    """One request as received. ``headers`` keep the Authorization header as it arrived."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    """Case-insensitive view of the request headers."""
    body: Any
    """The JSON body parsed, or None (no body, or not JSON: see ``raw``)."""
    raw: bytes
    time: float
    """``time.time()`` when the request arrived."""
    status: int | None = None
    """HTTP status answered (None while pending or when the connection was cut)."""
    outcome: Outcome = "pending"
    ended: float | None = None
    """``time.time()`` when the request ended."""

    @property
    def authorization(self) -> str | None:
        """The Authorization header as received, or None."""
        return self.headers.get("Authorization")

    @property
    def api_key(self) -> str | None:
        """The bearer token of the Authorization header, or None."""
        auth = self.authorization
        if auth is None or not auth.startswith("Bearer "):
            return None
        return auth[len("Bearer ") :]

    @property
    def model(self) -> str | None:
        """The ``model`` field of a JSON object body, or None."""
        if isinstance(self.body, dict):
            model = self.body.get("model")
            return model if isinstance(model, str) else None
        return None


@dataclass(eq=False)
class Journal:
    """Thread-safe log of requests plus in-flight and cancellation counters."""

    limit: int | None = 10_000
    """Keep at most this many requests (oldest dropped); None keeps all."""
    _entries: deque[RecordedRequest] = field(init=False)
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False)
    _in_flight: int = field(default=0, init=False)
    _cancelled: int = field(default=0, init=False)
    _total: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._entries = deque(maxlen=self.limit)

    # ---- writer side (server thread) ---------------------------------------------------------
    def begin(self, entry: RecordedRequest) -> None:
        """Record a request that has just arrived."""
        with self._cond:
            self._entries.append(entry)
            self._in_flight += 1
            self._total += 1
            self._cond.notify_all()

    def end(self, entry: RecordedRequest, outcome: Outcome, status: int | None) -> None:
        """Record how a request ended."""
        with self._cond:
            entry.outcome = outcome
            entry.status = status
            entry.ended = time.time()
            self._in_flight -= 1
            if outcome == "cancelled":
                self._cancelled += 1
            self._cond.notify_all()

    # ---- reader side (test thread) -----------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the recorded requests, oldest first."""
        with self._cond:
            return list(self._entries)

    @property
    def in_flight(self) -> int:
        """Requests received and not yet ended."""
        with self._cond:
            return self._in_flight

    @property
    def cancelled(self) -> int:
        """Requests whose client disconnected before the answer was complete."""
        with self._cond:
            return self._cancelled

    @property
    def total(self) -> int:
        """Requests received since the last :meth:`clear` (including dropped ones)."""
        with self._cond:
            return self._total

    def clear(self) -> None:
        """Forget recorded requests and reset the cancelled and total counters."""
        with self._cond:
            self._entries.clear()
            self._cancelled = 0
            self._total = 0

    def wait_for(self, predicate: Callable[[Journal], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate(journal)`` holds (re-checked on each change); False on
        timeout. The predicate runs with the (re-entrant) lock held."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def wait_cancelled(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` requests were cancelled; False on timeout."""
        return self.wait_for(lambda j: j._cancelled >= count, timeout)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until no request is in flight; False on timeout."""
        return self.wait_for(lambda j: j._in_flight == 0, timeout)

    def wait_requests(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` requests arrived; False on timeout."""
        return self.wait_for(lambda j: j._total >= count, timeout)
