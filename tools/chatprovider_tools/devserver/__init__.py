"""A small, fast OpenAI-compatible server: demo upstream, test upstream, benchmark upstream.

Public API:

- :class:`DevServer` runs it in a background thread for sync tests (``with DevServer(...) as
  srv``), with fault injection (:class:`Behaviour`), key rotation and a request journal.
- :func:`build_app` / :func:`start_runner` serve it inside an existing event loop.
- ``python -m chatprovider_tools.devserver`` runs it from the command line (:mod:`.cli`).
"""

from .app import build_app
from .behaviour import Behaviour
from .flavour import FLAVOURS, Flavour, get_flavour
from .journal import Journal, Outcome, RecordedRequest
from .keyring import KeyRing
from .server import DevServer, start_runner
from .state import ServerState

__all__ = [
    "FLAVOURS",
    "Behaviour",
    "DevServer",
    "Flavour",
    "Journal",
    "KeyRing",
    "Outcome",
    "RecordedRequest",
    "ServerState",
    "build_app",
    "get_flavour",
    "start_runner",
]
