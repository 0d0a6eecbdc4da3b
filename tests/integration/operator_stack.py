"""The operator with its embedded relay, as ``chatprovider run`` runs them, in a background
thread: used by the playground's browser tests and by the docs tests.

::

    with OperatorStack(kubeconfig, RelaySettings(port=0, playground=True),
                       namespaces=("team-a",)) as stack:
        httpx.get(f"{stack.relay_url}/models")
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType

from tests.integration.controller.conftest import own_lease

from chatprovider.controller.app import OperatorApp
from chatprovider.counters import CounterStore, QuotaGate
from chatprovider.kube import KubeClient
from chatprovider.kube.objects import ReferencedObjects
from chatprovider.quotas import QuotaIndex
from chatprovider.registry import Registry
from chatprovider.relay import Relay, RelaySettings
from chatprovider.settings import OperatorSettings
from chatprovider.upstream.transport import Transports

__all__ = ["OperatorStack"]


class OperatorStack:
    """``OperatorApp`` + ``Relay`` in one event loop, in a daemon thread."""

    def __init__(self, kubeconfig: Path, relay: RelaySettings, *,
                 namespaces: tuple[str, ...] = ()) -> None:
        # health_port 0: no /healthz on a fixed port another process on this machine may hold
        self.settings = own_lease(OperatorSettings(kubeconfig=str(kubeconfig),
                                                   namespaces=namespaces, min_retry_seconds=1.0,
                                                   health_port=0))
        self.relay_settings = relay
        self.app = OperatorApp(self.settings, relay=self._start_relay)
        self.relay: Relay | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="operator-stack", daemon=True)

    async def _start_relay(self, registry: Registry, objects: ReferencedObjects,
                           transports: Transports, kube: KubeClient, ready: Callable[[], bool],
                           quotas: QuotaIndex, counters: CounterStore
                           ) -> Callable[[], Awaitable[None]]:
        relay = Relay(self.relay_settings, registry, objects, transports, kube, ready=ready,
                      refresh_annotation=self.settings.refresh_annotation, quotas=quotas,
                      gate=QuotaGate(counters, fail_open=self.settings.quota_fail_open))
        await relay.start()
        self.relay = relay
        return relay.stop

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await self.app.run(self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by start() and stop()
            self._error = exc

    def start(self, timeout: float = 30.0) -> OperatorStack:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while (self.relay is None or self.app.reconciler is None) and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise AssertionError("the operator and its relay did not start in time")
            time.sleep(0.05)
        if self.relay is None:
            raise AssertionError(f"the operator stopped at start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the operator did not stop within 30s"
        if self._error is not None and not isinstance(self._error, asyncio.CancelledError):
            raise self._error

    def __enter__(self) -> OperatorStack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def relay_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (what OpenAI SDKs take as ``base_url``)."""
        assert self.relay is not None
        return self.relay.url

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT`` (where the playground is)."""
        return self.relay_url.removesuffix("/v1")
