"""Everything one dev server instance shares between its requests and its controlling thread."""

from __future__ import annotations

import contextvars
import itertools
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .behaviour import Behaviour
from .flavour import Flavour
from .journal import Journal, RecordedRequest
from .keyring import KeyRing

__all__ = [
    "ServerState", "attach", "body_of", "entry_of", "remember", "snapshot_of", "state_of",
]


@dataclass(eq=False)
class ServerState:
    """Flavour, knobs, keys and journal of one server; reachable from every request."""

    flavour: Flavour
    behaviour: Behaviour = field(default_factory=Behaviour)
    keyring: KeyRing = field(default_factory=KeyRing)
    journal: Journal = field(default_factory=Journal)
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set when the server shuts down: releases hung requests."""
    _ids: itertools.count[int] = field(default_factory=itertools.count, init=False)
    _salt: bytes = field(default_factory=lambda: secrets.token_hex(4).encode(), init=False)

    def models(self, snapshot: Behaviour) -> tuple[str, ...]:
        """The model ids served now."""
        return snapshot.models if snapshot.models is not None else self.flavour.models

    def strict_models(self, snapshot: Behaviour) -> bool:
        """Whether unknown models get a 404."""
        if snapshot.strict_models is not None:
            return snapshot.strict_models
        return self.flavour.name in ("vllm", "ollama")

    def next_id(self, prefix: bytes) -> bytes:
        """A fresh response id such as ``chatcmpl-5f3e9a1c0000002a`` (a per-server salt and a
        counter)."""
        return b"%s-%s%08x" % (prefix, self._salt, next(self._ids))


_STATE: web.AppKey[ServerState] = web.AppKey("chatprovider_tools.devserver.state", ServerState)
_CURRENT: contextvars.ContextVar[tuple[RecordedRequest, Behaviour]] = contextvars.ContextVar(
    "chatprovider_tools.devserver.current"
)
"""Journal entry and behaviour snapshot of the request handled by the current task."""


def state_of(app: web.Application) -> ServerState:
    """The server state attached to ``app`` by :func:`~.app.build_app`."""
    return app[_STATE]


def entry_of(request: web.Request) -> RecordedRequest:
    """The journal entry of ``request`` (set by the middleware, in this task's context)."""
    return _CURRENT.get()[0]


def snapshot_of(request: web.Request) -> Behaviour:
    """The behaviour snapshot taken when ``request`` arrived."""
    return _CURRENT.get()[1]


def attach(app: web.Application, state: ServerState) -> None:
    """Attach ``state`` to ``app``."""
    app[_STATE] = state


def remember(request: web.Request, entry: RecordedRequest, snapshot: Behaviour) -> None:
    """Attach the journal entry and the behaviour snapshot to ``request``. aiohttp handles each
    request in its own task, so a context variable keeps them apart (and avoids the request's
    string-keyed storage, which aiohttp warns about)."""
    _CURRENT.set((entry, snapshot))


def body_of(request: web.Request) -> Any:
    """The parsed JSON body of ``request`` (None if absent or not JSON)."""
    return entry_of(request).body
