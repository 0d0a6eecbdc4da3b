"""Runtime knobs of the dev server: answer pacing and fault injection.

A test thread changes them while the server runs in its own thread::

    srv.behaviour.status = 503
    srv.behaviour.retry_after = 2
    srv.behaviour.update(status=None, cut_stream_after=3)
    srv.behaviour.reset()

Each request takes one consistent :meth:`Behaviour.snapshot` when it starts, so a change made
mid-request applies to the next request (except ``hang``, which is re-read while hanging, so a
hung request can be released by setting ``hang = False``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["Behaviour"]


@dataclass(slots=True)
class Behaviour:
    """Thread-safe, mutable fault-injection settings. Assigning an unknown name raises."""

    stream_frames: int = 8
    """Content frames of a streamed answer (also the completion's token count)."""
    frame_delay: float = 0.0
    """Seconds between two streamed frames."""
    status: int | None = None
    """Answer every request (on ``fault_paths``) with this HTTP status and the OpenAI error
    envelope, such as 429, 500 or 503."""
    retry_after: float | None = None
    """Value of a ``Retry-After`` header added to error answers."""
    fail_times: int | None = None
    """With ``status``: fail only the next N requests, then clear ``status`` by itself."""
    delay_first_byte: float = 0.0
    """Seconds to wait before sending the response headers."""
    malformed_json: bool = False
    """Answer 200 with a truncated JSON body (or a truncated SSE frame when streaming)."""
    not_openai_shape: bool = False
    """Answer 200 with valid JSON that is neither a model list nor a completion."""
    cut_stream_after: int | None = None
    """Abort the connection (no final chunk, no ``[DONE]``) after this many SSE frames."""
    hang: bool = False
    """Never answer (until set back to False or the server stops)."""
    fault_paths: frozenset[str] | None = None
    """Limit the faults above to these paths (such as ``{"/v1/models"}``); None: every path."""
    models: tuple[str, ...] | None = None
    """Model ids served by ``GET /v1/models``; None: the flavour's models."""
    models_status: int | None = None
    """Do not offer ``GET /v1/models``: 404 (route missing) or 405 (method not allowed)."""
    strict_models: bool | None = None
    """Answer 404 for a model not in the list (as vLLM and Ollama do); None: the flavour's
    habit."""
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def __setattr__(self, name: str, value: Any) -> None:
        lock: threading.Lock | None = getattr(self, "_lock", None)
        if lock is None:  # during __init__
            object.__setattr__(self, name, value)
            return
        if name == "models" and value is not None:
            value = tuple(value)
        if name == "fault_paths" and value is not None:
            value = frozenset(value)
        with lock:
            object.__setattr__(self, name, value)

    def update(self, **changes: Any) -> None:
        """Change several knobs at once, atomically with respect to requests."""
        known = {f.name for f in fields(self) if f.init}
        unknown = set(changes) - known
        if unknown:
            raise AttributeError(f"unknown behaviour knob(s): {', '.join(sorted(unknown))}")
        if changes.get("models") is not None:
            changes["models"] = tuple(changes["models"])
        if changes.get("fault_paths") is not None:
            changes["fault_paths"] = frozenset(changes["fault_paths"])
        with self._lock:
            for name, value in changes.items():
                object.__setattr__(self, name, value)

    def reset(self) -> None:
        """Restore every knob to its default (no faults, 8 frames, no delay)."""
        defaults = Behaviour()
        self.update(**{f.name: getattr(defaults, f.name) for f in fields(self) if f.init})

    def snapshot(self) -> Behaviour:
        """A consistent copy for one request (with its own lock)."""
        with self._lock:
            return replace(self)

    def take(self, path: str) -> Behaviour:
        """The snapshot for a request on ``path``; counts down ``fail_times`` when it applies."""
        with self._lock:
            snap = replace(self)
            counting = self.status is not None and self.fail_times is not None
            if counting and (self.fault_paths is None or path in self.fault_paths):
                left = (self.fail_times or 0) - 1
                if left < 0:  # fail_times was 0: nothing left to fail
                    snap = replace(snap, status=None)
                if left <= 0:
                    object.__setattr__(self, "status", None)
                    object.__setattr__(self, "fail_times", None)
                else:
                    object.__setattr__(self, "fail_times", left)
            return snap

    def faults_apply(self, path: str) -> bool:
        """Whether the fault knobs apply to a request on ``path``."""
        return self.fault_paths is None or path in self.fault_paths
