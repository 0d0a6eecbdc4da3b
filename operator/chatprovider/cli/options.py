"""Options shared by several commands; each has a ``CHATPROVIDER_*`` environment variable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from chatprovider.domain.egress import EgressPolicy
from chatprovider.relay import AuthMode, RelaySettings

__all__ = ["egress_policy", "event_loop_option", "kube_options", "relay_options", "relay_settings",
           "split"]

F = TypeVar("F", bound=Callable[..., Any])


def split(values: tuple[str, ...]) -> tuple[str, ...]:
    """Flatten repeated and comma-separated values (``-n a -n b`` or ``CHATPROVIDER_X=a,b``)."""
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


def event_loop_option(f: F) -> F:
    """``--event-loop``: uvloop (the default: less time per relayed request than asyncio's own
    loop, see BENCHMARKS.md) or asyncio's own loop."""
    return click.option(
        "--event-loop", default="uvloop", envvar="CHATPROVIDER_EVENT_LOOP", show_envvar=True,
        show_default=True, type=click.Choice(["uvloop", "asyncio"]),
        help="Event loop implementation: uvloop (faster) or asyncio's own.")(f)


def kube_options(f: F) -> F:
    for option in reversed([
        click.option("--kubeconfig", envvar="CHATPROVIDER_KUBECONFIG",
                     show_envvar=True, type=click.Path(),
                     help="kubeconfig file; default: in-cluster, then $KUBECONFIG, "
                          "~/.kube/config."),
        click.option("-n", "--namespace", "namespaces", multiple=True,
                     envvar="CHATPROVIDER_NAMESPACES", show_envvar=True,
                     help="Namespace to watch (repeat or comma-separate); default: all."),
        click.option("--egress-allow", multiple=True, envvar="CHATPROVIDER_EGRESS_ALLOW",
                     show_envvar=True,
                     help="Only these CIDRs may be connected to (repeat or comma-separate)."),
        click.option("--egress-deny", multiple=True, envvar="CHATPROVIDER_EGRESS_DENY",
                     show_envvar=True,
                     help="These CIDRs may never be connected to, e.g. 127.0.0.0/8 in a "
                          "cluster. Link-local and cloud metadata addresses are always "
                          "denied unless allowed explicitly."),
        click.option("--log-level", default="INFO", envvar="CHATPROVIDER_LOG_LEVEL",
                     show_envvar=True,
                     show_default=True, help="Log level.", type=click.Choice(
                         ["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)),
        click.option("--require-secret-label/--no-require-secret-label", default=False,
                     envvar="CHATPROVIDER_REQUIRE_SECRET_LABEL", show_envvar=True,
                     show_default=True,
                     help="Read only Secrets labelled ai.chatprovider.dev/provider-secret=true; "
                          "any other is treated as missing (defence in depth where the "
                          "admission policy cannot run; see docs/security.md)."),
        click.option("--log-format", default="text", envvar="CHATPROVIDER_LOG_FORMAT",
                     show_envvar=True,
                     show_default=True, help="text, or json for one JSON object per line.",
                     type=click.Choice(["text", "json"])),
    ]):
        f = option(f)
    return f


def relay_options(f: F) -> F:
    for option in reversed([
        click.option("--relay-host", default="0.0.0.0", envvar="CHATPROVIDER_RELAY_HOST",
                     show_envvar=True,
                     show_default=True, help="Address the relay listens on."),
        click.option("--relay-port", default=8080, type=int, envvar="CHATPROVIDER_RELAY_PORT",
                     show_envvar=True,
                     show_default=True, help="Port of the relay (0 picks a free one)."),
        click.option("--relay-playground/--no-relay-playground", default=False,
                     envvar="CHATPROVIDER_RELAY_PLAYGROUND", show_envvar=True, show_default=True,
                     help="Serve the web playground at / (reach it through a port-forward; "
                          "callers still sign in with their token in kubernetes auth mode)."),
        click.option("--relay-auth", default="kubernetes", envvar="CHATPROVIDER_RELAY_AUTH",
                     show_envvar=True,
                     show_default=True, type=click.Choice([m.value for m in AuthMode]),
                     help="kubernetes: callers present ServiceAccount tokens, checked with "
                          "TokenReview and authorized with SubjectAccessReview (verb 'use' on "
                          "chatproviders). none: anyone may call (local demo only)."),
        click.option("--relay-token-audience", "relay_token_audiences", multiple=True,
                     default=("chatprovider-relay",), envvar="CHATPROVIDER_RELAY_TOKEN_AUDIENCES",
                     show_envvar=True, show_default=True,
                     help="Audience a caller's token must be issued for (repeat or "
                          "comma-separate; an empty value accepts the API server's own "
                          "audiences, not recommended)."),
        click.option("--relay-max-stream-duration", default=0.0, type=click.FloatRange(0),
                     envvar="CHATPROVIDER_RELAY_MAX_STREAM_DURATION", show_envvar=True,
                     show_default=True, metavar="SECONDS",
                     help="End a streamed answer after this long with an error event "
                          "(0: no limit)."),
    ]):
        f = option(f)
    return f


def egress_policy(allow: tuple[str, ...], deny: tuple[str, ...]) -> EgressPolicy:
    try:
        return EgressPolicy.from_strings(split(allow), split(deny))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def relay_settings(host: str, port: int, auth: str, playground: bool = False,
                   token_audiences: tuple[str, ...] = ("chatprovider-relay",),
                   max_stream_duration: float = 0.0) -> RelaySettings:
    return RelaySettings(host=host, port=port, auth_mode=AuthMode(auth), playground=playground,
                         token_audiences=split(token_audiences),
                         max_stream_duration=max_stream_duration)
