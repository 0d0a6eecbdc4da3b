"""DevServer: the dev server in a background thread with its own event loop, for sync tests.

::

    with DevServer(flavour="vllm", api_keys={"k"}) as srv:
        httpx.get(f"{srv.url}/models", headers={"Authorization": "Bearer k"})
        srv.behaviour.status = 503          # fault injection, from the test thread
        srv.set_api_keys({"new"})           # key rotation
        assert srv.requests[-1].api_key == "k"
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterable
from types import TracebackType

from aiohttp import web

from .app import build_app
from .behaviour import Behaviour
from .flavour import Flavour, get_flavour
from .journal import Journal, RecordedRequest
from .keyring import KeyRing
from .state import ServerState

__all__ = ["DevServer", "start_runner"]


async def start_runner(
    state: ServerState,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    shutdown_timeout: float = 1.0,
) -> tuple[web.AppRunner, int]:
    """Serve ``state`` on ``host:port`` in the running loop; return the runner (call its
    ``cleanup()`` to stop) and the bound port. No access log: it would dominate the cost of a
    request."""
    runner = web.AppRunner(
        build_app(state), handler_cancellation=True, access_log=None,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context, backlog=1024)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return runner, int(bound)


class DevServer:
    """A fake OpenAI-compatible server on loopback, run in a daemon thread."""

    def __init__(
        self,
        flavour: str | Flavour = "generic",
        *,
        api_keys: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        models: Iterable[str] | None = None,
        behaviour: Behaviour | None = None,
        journal_limit: int | None = 10_000,
        startup_timeout: float = 10.0,
    ) -> None:
        """Configure (not start) a server. ``port=0`` picks a free port; ``api_keys`` empty
        means no auth; ``models`` replaces the flavour's model ids."""
        self._state = ServerState(
            flavour=get_flavour(flavour) if isinstance(flavour, str) else flavour,
            behaviour=behaviour or Behaviour(),
            keyring=KeyRing(api_keys),
            journal=Journal(limit=journal_limit),
        )
        if models is not None:
            self._state.behaviour.models = tuple(models)
        self._host = host
        self._requested_port = port
        self._ssl = ssl_context
        self._startup_timeout = startup_timeout
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self) -> DevServer:
        """Start serving; return once the port is bound (raise if it cannot be)."""
        if self._thread is not None:
            raise RuntimeError("DevServer already started")
        self._state.stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"devserver-{self.flavour.name}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(self._startup_timeout):
            raise RuntimeError(f"DevServer did not start within {self._startup_timeout}s")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"DevServer failed to start: {self._error}") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: release hung requests, close connections, join the thread."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        self._state.stopping.set()
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        self._thread = None
        self._ready.clear()

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        runner, self._port = await start_runner(
            self._state, self._host, self._requested_port, self._ssl
        )
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            handlers = runner.server.connections if runner.server is not None else []
            transports = [h.transport for h in handlers if h.transport is not None]
            await runner.cleanup()
            # A TLS connection's close() waits for the peer's close_notify, which the closing
            # loop would never see: its socket would be left to the garbage collector.
            for transport in transports:
                transport.abort()

    # ---- addresses ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("DevServer not started")
        return self._port

    @property
    def host(self) -> str:
        """The bound host."""
        return self._host

    @property
    def base_url(self) -> str:
        """``http(s)://127.0.0.1:PORT`` (no path)."""
        scheme = "https" if self._ssl is not None else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI base URL, ``base_url + "/v1"`` (what an OpenAI SDK takes as base_url)."""
        return self.base_url + "/v1"

    # ---- configuration at runtime ---------------------------------------------------------------
    @property
    def flavour(self) -> Flavour:
        """The flavour served."""
        return self._state.flavour

    @property
    def behaviour(self) -> Behaviour:
        """Fault-injection knobs; change them from any thread."""
        return self._state.behaviour

    @property
    def api_keys(self) -> frozenset[str]:
        """The accepted API keys (empty: no auth)."""
        return self._state.keyring.keys

    def set_api_keys(self, keys: Iterable[str]) -> None:
        """Accept exactly ``keys`` from the next request on (empty: turn auth off)."""
        self._state.keyring.set(keys)

    @property
    def models(self) -> tuple[str, ...]:
        """The model ids served by ``GET /v1/models`` now."""
        return self._state.models(self._state.behaviour)

    def set_models(self, models: Iterable[str] | None) -> None:
        """Serve these model ids from the next request on (None: the flavour's)."""
        self._state.behaviour.models = None if models is None else tuple(models)

    # ---- journal ----------------------------------------------------------------------------
    @property
    def journal(self) -> Journal:
        """The request journal (with ``wait_for``, ``wait_cancelled``, ``wait_idle``...)."""
        return self._state.journal

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the recorded requests, oldest first."""
        return self._state.journal.requests

    def clear_requests(self) -> None:
        """Forget the recorded requests and reset the counters."""
        self._state.journal.clear()

    @property
    def in_flight(self) -> int:
        """Requests being answered now."""
        return self._state.journal.in_flight

    @property
    def cancelled(self) -> int:
        """Requests abandoned by their client before the answer was complete."""
        return self._state.journal.cancelled

    def wait_cancelled(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until ``count`` requests were cancelled; False on timeout."""
        return self._state.journal.wait_cancelled(count, timeout)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until no request is in flight; False on timeout."""
        return self._state.journal.wait_idle(timeout)
