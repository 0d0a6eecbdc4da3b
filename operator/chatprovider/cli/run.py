"""``chatprovider run`` (operator + embedded relay) and ``chatprovider relay`` (relay alone)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import click

from chatprovider.cli.options import (
    egress_policy,
    event_loop_option,
    kube_options,
    relay_options,
    relay_settings,
)
from chatprovider.controller.app import OperatorApp, RelayStarter, run_kopf
from chatprovider.controller.handlers import build_kopf_registry
from chatprovider.feed import Feed
from chatprovider.kube import KubeClient, KubeConfig
from chatprovider.kube.objects import ReferencedObjects
from chatprovider.logs import SecretValues, setup_logging
from chatprovider.registry import Registry
from chatprovider.relay import Relay, RelaySettings
from chatprovider.settings import OperatorSettings
from chatprovider.upstream.transport import Transports

__all__ = ["embedded_relay", "relay", "run", "serve"]

log = logging.getLogger(__name__)


def embedded_relay(settings: RelaySettings) -> RelayStarter:
    """A starter that runs the relay inside the operator's event loop."""

    async def start(registry: Registry, objects: ReferencedObjects, transports: Transports,
                    kube: KubeClient) -> Callable[[], Awaitable[None]]:
        server = Relay(settings, registry, objects, transports, kube)
        await server.start()
        log.info("relay listening on %s", server.url)
        return server.stop

    return start


def serve(main: Callable[[asyncio.Event], Awaitable[None]], event_loop: str = "uvloop") -> None:
    """Run ``main(stop_flag)`` until SIGINT/SIGTERM sets the flag, on uvloop or on asyncio's
    own event loop (``event_loop``)."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await main(stop)

    if event_loop == "uvloop":
        import uvloop

        uvloop.run(runner())
    else:
        asyncio.run(runner())


@click.command(short_help="Run the operator (with the relay embedded).")
@kube_options
@relay_options
@event_loop_option
@click.option("--relay/--no-relay", "with_relay", default=True, envvar="CHATPROVIDER_RELAY",
              show_envvar=True,
              show_default=True, help="Run the relay inside the operator process.")
@click.option("--workers", default=16, type=click.IntRange(1, 512), show_default=True,
              envvar="CHATPROVIDER_WORKERS",
              show_envvar=True, help="Providers checked concurrently.")
@click.option("--health-port", default=8081, type=int, show_default=True,
              envvar="CHATPROVIDER_HEALTH_PORT",
              show_envvar=True, help="Port of the operator's /healthz "
              "(0 disables it).")
def run(kubeconfig: str | None, namespaces: tuple[str, ...], egress_allow: tuple[str, ...],
        egress_deny: tuple[str, ...], require_secret_label: bool, log_level: str,
        log_format: str, relay_host: str, relay_port: int, relay_playground: bool,
        relay_auth: str, relay_token_audiences: tuple[str, ...],
        relay_max_stream_duration: float, with_relay: bool, event_loop: str, workers: int,
        health_port: int) -> None:
    """Run the operator: watch ChatProviders, check their endpoints, write status and Events;
    with the relay embedded unless --no-relay."""
    from chatprovider.cli.options import split

    secret_values = SecretValues()
    setup_logging(log_level, log_format, secret_values)
    settings = OperatorSettings(namespaces=split(namespaces), kubeconfig=kubeconfig,
                                egress=egress_policy(egress_allow, egress_deny),
                                workers=workers, log_format=log_format, log_level=log_level,
                                require_secret_label=require_secret_label)
    starter = embedded_relay(relay_settings(relay_host, relay_port, relay_auth,
                                            relay_playground, relay_token_audiences,
                                            relay_max_stream_duration)) \
        if with_relay else None
    app = OperatorApp(settings, relay=starter, liveness_port=health_port or None,
                      secret_values=secret_values)
    serve(app.run, event_loop)


@click.command(short_help="Run the relay alone (scalable, every replica active).")
@kube_options
@relay_options
@event_loop_option
def relay(kubeconfig: str | None, namespaces: tuple[str, ...], egress_allow: tuple[str, ...],
          egress_deny: tuple[str, ...], require_secret_label: bool, log_level: str,
          log_format: str, relay_host: str, relay_port: int, relay_playground: bool,
          relay_auth: str, relay_token_audiences: tuple[str, ...],
          relay_max_stream_duration: float, event_loop: str) -> None:
    """Run the relay alone (a horizontally scalable Deployment): it only reads ChatProviders
    and the Secrets they reference; every replica is active."""
    from chatprovider.cli.options import split

    secret_values = SecretValues()
    setup_logging(log_level, log_format, secret_values)
    settings = OperatorSettings(namespaces=split(namespaces), kubeconfig=kubeconfig,
                                egress=egress_policy(egress_allow, egress_deny),
                                require_secret_label=require_secret_label)
    rsettings = relay_settings(relay_host, relay_port, relay_auth, relay_playground,
                               relay_token_audiences, relay_max_stream_duration)

    async def main(stop: asyncio.Event) -> None:
        config = KubeConfig.load(kubeconfig)
        kube = KubeClient(config)
        transports = Transports(settings.egress)
        registry = Registry()
        objects = ReferencedObjects(kube, watch_timeout=settings.watch_server_timeout,
                                    secret_values=secret_values,
                                    require_secret_label=settings.require_secret_label)
        feed = Feed(registry, objects)

        def observe(event_type: str, body: Mapping[str, Any]) -> None:
            feed.observe(event_type, body)

        kopf_registry = build_kopf_registry(observe, config=config, liveness=lambda: len(registry),
                                            settings=settings)
        stop_relay = await embedded_relay(rsettings)(registry, objects, transports, kube)
        try:
            await run_kopf(kopf_registry, settings, stop)
        finally:
            await stop_relay()
            await objects.close()
            await transports.close()
            await kube.close()
            await asyncio.sleep(0.25)  # let closed TLS transports finish (see OperatorApp.run)

    serve(main, event_loop)
