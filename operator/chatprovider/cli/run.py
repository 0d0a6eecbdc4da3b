"""``chatprovider run`` (operator + embedded relay) and ``chatprovider relay`` (relay alone).

Their options are made from the settings models (:mod:`chatprovider.cli.options`): every field
a command takes is a flag and an environment variable of that command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import click

from chatprovider.cli.heap import freeze_when_ready
from chatprovider.cli.options import build, settings_options
from chatprovider.cli.ports import ensure_free, explain_bind_errors
from chatprovider.controller.app import OperatorApp, RelayStarter
from chatprovider.counters import CounterStore, QuotaGate
from chatprovider.kube import KubeClient
from chatprovider.kube.objects import ReferencedObjects
from chatprovider.logs import SecretValues, setup_logging
from chatprovider.quotas import QuotaIndex
from chatprovider.registry import Registry
from chatprovider.relay import Relay
from chatprovider.relay.app import RelayApp
from chatprovider.settings import EventLoop, OperatorSettings, RelaySettings
from chatprovider.upstream.transport import Transports

__all__ = ["embedded_relay", "relay", "run", "serve"]

log = logging.getLogger(__name__)


def embedded_relay(settings: RelaySettings, shared: OperatorSettings | None = None
                   ) -> RelayStarter:
    """A starter that runs the relay inside the operator's event loop. ``shared`` holds what the
    relay follows of the operator's settings: the refresh annotation it asks for re-checks with,
    and the quota failure mode (default: failing closed). The quota counters are the operator's
    own store, so that the ChatQuotas' status reads what this relay counted."""
    shared = shared or OperatorSettings()

    async def start(registry: Registry, objects: ReferencedObjects, transports: Transports,
                    kube: KubeClient, ready: Callable[[], bool], quotas: QuotaIndex,
                    counters: CounterStore) -> Callable[[], Awaitable[None]]:
        server = Relay(settings, registry, objects, transports, kube, ready=ready,
                       refresh_annotation=shared.refresh_annotation, quotas=quotas,
                       gate=QuotaGate(counters, fail_open=shared.quota_fail_open))
        await server.start()
        log.info("relay listening on %s", server.url)
        return server.stop

    return start


def serve(main: Callable[[asyncio.Event], Awaitable[None]],
          event_loop: EventLoop = EventLoop.UVLOOP, *,
          ready: Callable[[], bool] | None = None) -> None:
    """Run ``main(stop_flag)`` until SIGINT/SIGTERM sets the flag, on uvloop or on asyncio's
    own event loop (``event_loop``). Once ``ready()`` (if given), the heap loaded at start is
    frozen out of the garbage collector's walks (:mod:`chatprovider.cli.heap`)."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        freezer = None if ready is None else asyncio.create_task(
            freeze_when_ready(ready), name="freeze the heap")
        try:
            await main(stop)
        finally:
            if freezer is not None:
                freezer.cancel()

    if event_loop == EventLoop.UVLOOP:
        import uvloop

        uvloop.run(runner())
    else:
        asyncio.run(runner())


@click.command(short_help="Run the operator (with the relay embedded).")
@settings_options("run")
def run(**options: Any) -> None:
    """Run the operator: watch ChatProviders, check their endpoints, write status and Events
    (the replica that holds the Lease); with the relay embedded unless --no-relay."""
    settings = build(OperatorSettings, options, "run")
    relay_settings = build(RelaySettings, options, "run")
    secret_values = SecretValues()
    setup_logging(settings.log_level, settings.log_format, secret_values)
    if settings.relay:
        ensure_free(relay_settings.host, relay_settings.port, "--relay-port")
    ensure_free("0.0.0.0", settings.health_port, "--health-port")
    starter = embedded_relay(relay_settings, settings) if settings.relay else None
    app = OperatorApp(settings, relay=starter, secret_values=secret_values)
    with explain_bind_errors("--relay-port", "--health-port"):
        serve(app.run, settings.event_loop,
              ready=lambda: app.watch is not None and app.watch.synced())


@click.command(short_help="Run the relay alone (scalable, every replica active).")
@settings_options("relay")
def relay(**options: Any) -> None:
    """Run the relay alone (a horizontally scalable Deployment): it only reads ChatProviders
    and the Secrets they reference; every replica is active, and ready once it has read them
    all."""
    settings = build(OperatorSettings, options, "relay")
    relay_settings = build(RelaySettings, options, "relay")
    secret_values = SecretValues()
    setup_logging(settings.log_level, settings.log_format, secret_values)
    ensure_free(relay_settings.host, relay_settings.port, "--relay-port")
    app = RelayApp(settings, relay_settings, secret_values=secret_values)
    with explain_bind_errors("--relay-port"):
        serve(app.run, settings.event_loop,
              ready=lambda: app.relay is not None and app.relay.is_ready())
