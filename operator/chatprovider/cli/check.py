"""``chatprovider check URL``: probe an endpoint from a terminal exactly as the operator does."""

from __future__ import annotations

import asyncio
import os
import socket

import click

from chatprovider.api.v1alpha1 import TLS, ChatProviderSpec, Discovery, Timeouts, Verification
from chatprovider.cli.options import egress_policy
from chatprovider.controller.prober import ProbeRequest, probe
from chatprovider.domain.conditions import Reason
from chatprovider.domain.egress import EgressPolicy, parse_ip
from chatprovider.domain.endpoint import InvalidEndpoint, resolve_endpoint
from chatprovider.domain.probe import CallOutcome, assess
from chatprovider.upstream.transport import Transports

__all__ = ["check"]

_MARK = {"True": click.style("✔", fg="green"), "False": click.style("✘", fg="red"),
         "Unknown": click.style("?", fg="yellow")}


def _call_line(name: str, call: CallOutcome | None) -> None:
    if call is None:
        click.echo(f"  {name:<14} skipped")
    elif call.failure is not None:
        click.echo(f"  {name:<14} {_MARK['False']} {call.failure}: {call.detail}")
    else:
        extra = f", {len(call.models)} models" if call.models is not None else ""
        shape = f", {call.shape_error}" if call.shape_error else ""
        click.echo(f"  {name:<14} HTTP {call.status} in {call.latency_ms} ms{extra}{shape}")


def _dns(host: str, port: int, policy: EgressPolicy) -> None:
    if parse_ip(host) is not None:
        decision = policy.check(host)
        click.echo(f"  {'address':<14} {host} ({decision.reason})")
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        click.echo(f"  {'resolve':<14} {_MARK['False']} {host}: {exc.strerror or exc}")
        return
    for addr in sorted({str(i[4][0]) for i in infos}):
        decision = policy.check(addr)
        mark = _MARK["True"] if decision else _MARK["False"]
        click.echo(f"  {'resolve':<14} {mark} {host} -> {addr} ({decision.reason})")


@click.command()
@click.argument("url")
@click.option("--api-key-env", metavar="VAR", help="Environment variable holding the API key "
              "(never pass a key on the command line: it would land in your shell history).")
@click.option("--model", help="Also send a one-token test message to this model.")
@click.option("--static-model", "static", multiple=True, help="Models to offer when the server "
              "has no GET /v1/models (repeatable).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
              help="PEM file of CAs to trust (like spec.tls.caBundle).")
@click.option("--insecure-skip-verify", is_flag=True, help="Do not verify TLS (dangerous).")
@click.option("--timeout", default="10s", show_default=True, help="Connect and request timeout.")
@click.option("--egress-allow", multiple=True, help="As the operator's --egress-allow.")
@click.option("--egress-deny", multiple=True, help="As the operator's --egress-deny.")
def check(url: str, api_key_env: str | None, model: str | None, static: tuple[str, ...],
          ca_file: str | None, insecure_skip_verify: bool, timeout: str,
          egress_allow: tuple[str, ...], egress_deny: tuple[str, ...]) -> None:
    """Probe URL (a base URL or the full .../v1/chat/completions URL) step by step, and print
    the conditions the operator would write. Exits 1 when the provider would not be Ready."""
    policy = egress_policy(egress_allow, egress_deny)
    key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not key:
        raise click.BadParameter(f"${api_key_env} is empty or unset", param_hint="--api-key-env")
    try:
        spec = ChatProviderSpec(
            endpoint=url, models={"static": list(static)},
            discovery=Discovery(), timeouts=Timeouts(connect=timeout, request=timeout),
            verification=Verification(enabled=bool(model), model=model),
            tls=TLS(insecure_skip_verify=insecure_skip_verify))
    except ValueError as exc:
        raise click.BadParameter(str(exc).splitlines()[0], param_hint="URL") from None
    click.secho(f"checking {url}", bold=True)
    try:
        endpoint = resolve_endpoint(url)
        click.echo(f"  {'chat URL':<14} {endpoint.chat_completions_url}")
        click.echo(f"  {'models URL':<14} {endpoint.models_url}")
        _dns(endpoint.host, endpoint.port, policy)
    except InvalidEndpoint as exc:
        click.echo(f"  {'endpoint':<14} {_MARK['False']} {exc}")
    ca_pem = open(ca_file, "rb").read() if ca_file else None  # noqa: SIM115
    refs = (Reason.SECRET_RESOLVED, f"API key from ${api_key_env}") if key else \
        (Reason.NO_SECRET_REQUIRED, "no API key given")

    async def run() -> int:
        transports = Transports(policy)
        try:
            result = await probe(ProbeRequest(spec, key, ca_pem, refs), transports, 4 << 20)
        finally:
            await transports.close()
        _call_line("GET models", result.models_call)
        _call_line("test message", result.verify_call)
        assessment = assess(result)
        click.secho("conditions the operator would write:", bold=True)
        for cond in assessment.conditions:
            click.echo(f"  {_MARK[cond.status]} {cond.type:<18} {cond.reason:<22} {cond.message}")
        if assessment.models:
            names = ", ".join(m.id for m in assessment.models[:20])
            click.echo(f"models: {names}")
        return 0 if assessment.ready.status == "True" else 1

    raise SystemExit(asyncio.run(run()))
