"""``chatprovider check URL``: probe an endpoint from a terminal exactly as the operator does."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import click

from chatprovider.api.v1alpha1 import (
    TLS,
    ChatProviderSpec,
    Discovery,
    ServerType,
    Timeouts,
    Verification,
)
from chatprovider.cli.options import egress_policy
from chatprovider.controller.prober import ProbeRequest, endpoint_of, probe
from chatprovider.domain.conditions import Reason
from chatprovider.domain.egress import EgressPolicy, parse_ip
from chatprovider.domain.endpoint import InvalidEndpoint, resolve_endpoint
from chatprovider.domain.probe import MODELS_ROUTE, CallOutcome, assess
from chatprovider.upstream.transport import Transports

__all__ = ["HINTS", "check"]

#: What to do about each reason that makes a provider not Ready, in the terms of this command
#: (the spec field it stands for in brackets). docs/troubleshooting.md says more.
HINTS: dict[Reason, str] = {
    Reason.SECRET_NOT_FOUND: "create the Secret in the provider's namespace "
                             "(spec.apiKeySecretRef.name).",
    Reason.SECRET_KEY_MISSING: "the Secret has no such key (spec.apiKeySecretRef.key, default "
                               "apiKey).",
    Reason.SECRET_KEY_EMPTY: "the key in the Secret is empty: put the API key in it.",
    Reason.SECRET_FORBIDDEN: "the operator may not read that Secret: check its RBAC "
                             "(the chart's rbac.resourceNames).",
    Reason.CA_BUNDLE_NOT_FOUND: "create the ConfigMap or Secret named in spec.tls.caBundle.",
    Reason.CA_BUNDLE_KEY_MISSING: "the CA bundle's ConfigMap or Secret has no such key.",
    Reason.CA_BUNDLE_INVALID: "the CA bundle holds no PEM certificate "
                              "(-----BEGIN CERTIFICATE-----).",
    Reason.INVALID_ENDPOINT: "give an http(s) URL with a host, such as http://host:8000/v1.",
    Reason.EGRESS_DENIED: "the egress policy refuses this address; allow it with --egress-allow "
                          "(the operator's --egress-allow), or use a Service address.",
    Reason.DNS_FAILURE: "the host name does not resolve here: check its spelling, or use the "
                        "Service's full name (svc.namespace.svc.cluster.local).",
    Reason.CONNECTION_REFUSED: "nothing listens at that host and port: is the server running, "
                               "on this port, and listening on more than 127.0.0.1?",
    Reason.CONNECTION_FAILED: "the connection failed (network unreachable, reset): check routes, "
                              "firewalls and NetworkPolicies.",
    Reason.TLS_UNKNOWN_AUTHORITY: "the certificate is signed by a CA that is not trusted: pass "
                                  "it with --ca-file (spec.tls.caBundle).",
    Reason.TLS_HOSTNAME_MISMATCH: "the certificate is for another name: use a host name the "
                                  "certificate lists, or reissue it with this one.",
    Reason.TLS_ERROR: "the TLS handshake failed: is this an https URL to a plain http server "
                      "(or the reverse)?",
    Reason.TIMEOUT: "no answer in time: the server may be overloaded or loading a model; raise "
                    "--timeout (spec.timeouts.request).",
    Reason.PROXY_ERROR: "the proxy could not be reached or refused the connection (spec.proxy).",
    Reason.REDIRECT_REFUSED: "the server redirects to another origin: use the final URL.",
    Reason.UPSTREAM_SERVER_ERROR: "the server failed (5xx): look at its logs; the operator "
                                  "retries with back-off.",
    Reason.RATE_LIMITED: "the server answers 429: it is busy or the key is over its quota.",
    Reason.UNAUTHORIZED: "the server refused the key (401): pass the right one with "
                         "--api-key-env (spec.apiKeySecretRef).",
    Reason.FORBIDDEN: "the server accepted the key but refused access (403): check the key's "
                      "permissions.",
    Reason.MODELS_ROUTE_NOT_OFFERED: "the server has no GET /v1/models: name its models with "
                                     "--static-model (spec.models.static).",
    Reason.INVALID_MODELS_RESPONSE: "GET /v1/models did not answer an OpenAI model list: is the "
                                    "URL the server's OpenAI-compatible API (often .../v1)?",
    Reason.UNEXPECTED_STATUS: "GET /v1/models answered an unexpected status: is the URL the "
                              "server's OpenAI-compatible API?",
    Reason.NO_MODELS: "the server offers no model (or spec.models.allow filters them all out).",
    Reason.VERIFICATION_FAILED: "the test message failed: is --model (spec.verification.model) "
                                "one of the server's models?",
}

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


@click.command(short_help="Probe an endpoint as the operator would; print its conditions.")
@click.argument("url")
@click.option("--api-key-env", metavar="VAR", help="Environment variable holding the API key, "
              "sent as Authorization: Bearer (like spec.apiKeySecretRef). Never pass a key on "
              "the command line: it would land in your shell history.")
@click.option("--model", metavar="MODEL", help="Also send a one-token test message to this "
              "model (like spec.verification).")
@click.option("--static-model", "static", metavar="MODEL", multiple=True,
              help="A model to offer when the server has no GET /v1/models (like "
              "spec.models.static; repeatable).")
@click.option("--server-type", type=click.Choice([t.value for t in ServerType]),
              default=ServerType.GENERIC.value, show_default=True,
              help="The kind of server (like spec.serverType): ollama and tgi add their own "
              "model list where GET /v1/models is missing.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
              help="PEM file of the CAs to trust instead of the system's (like "
              "spec.tls.caBundle).")
@click.option("--insecure-skip-verify", is_flag=True,
              help="Do not verify the server's certificate at all (like "
              "spec.tls.insecureSkipVerify; dangerous).")
@click.option("--timeout", default="10s", show_default=True, metavar="DURATION",
              help="Connect timeout, and again for the answer (like spec.timeouts).")
@click.option("--egress-allow", metavar="CIDR", multiple=True,
              help="Only these addresses may be connected to, as the operator's --egress-allow "
              "(repeat or comma-separate).")
@click.option("--egress-deny", metavar="CIDR", multiple=True,
              help="These addresses may never be connected to, as the operator's --egress-deny. "
              "Link-local and cloud metadata addresses are denied unless allowed.")
def check(url: str, api_key_env: str | None, model: str | None, static: tuple[str, ...],
          server_type: str, ca_file: str | None, insecure_skip_verify: bool, timeout: str,
          egress_allow: tuple[str, ...], egress_deny: tuple[str, ...]) -> None:
    """Probe URL step by step exactly as the operator does (resolve, connect, GET /v1/models,
    optionally a test message), print the conditions it would write and what to do about a
    failure. Exits 0 when the provider would be Ready, 1 when not, 2 on a usage error.

    URL is a base URL (http://host:8000, http://host:8000/v1) or the full chat completions URL
    (http://host:8000/v1/chat/completions), as in spec.endpoint.

    \b
    Examples:
      chatprovider check http://localhost:11434
      VLLM_KEY=... chatprovider check http://gpu-box:8000/v1 --api-key-env VLLM_KEY
      chatprovider check https://llm.corp.example/v1 --ca-file corp-ca.pem --model gpt-4o
      chatprovider check http://tgi:8080 --server-type tgi
    """
    policy = egress_policy(egress_allow, egress_deny)
    key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not key:
        raise click.BadParameter(f"${api_key_env} is empty or unset", param_hint="--api-key-env")
    try:
        spec = ChatProviderSpec(
            endpoint=url, server_type=ServerType(server_type), models={"static": list(static)},
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
    ca_pem = Path(ca_file).read_bytes() if ca_file else None
    refs = (Reason.SECRET_RESOLVED, f"API key from ${api_key_env}") if key else \
        (Reason.NO_SECRET_REQUIRED, "no API key given")

    async def run() -> int:
        transports = Transports(policy)
        try:
            result = await probe(ProbeRequest(spec, endpoint_of(spec), key, ca_pem, refs),
                                 transports, 4 << 20)
        finally:
            await transports.close()
        _call_line("GET models" if result.models_route == MODELS_ROUTE else result.models_route,
                   result.models_call)
        _call_line("test message", result.verify_call)
        assessment = assess(result)
        click.secho("conditions the operator would write:", bold=True)
        for cond in assessment.conditions:
            click.echo(f"  {_MARK[cond.status]} {cond.type:<18} {cond.reason:<22} {cond.message}")
        if assessment.models:
            names = ", ".join(m.id for m in assessment.models[:20])
            more = f" (and {len(assessment.models) - 20} more)" if len(assessment.models) > 20 \
                else ""
            click.echo(f"models: {names}{more}")
        if assessment.apis:
            click.echo("apis: " + ", ".join(op.value for op in assessment.apis))
        ready = assessment.ready
        if ready.status == "True":
            click.secho(f"Ready: {ready.message}", fg="green", bold=True)
            return 0
        click.secho(f"not Ready: {ready.reason}", fg="red", bold=True)
        hint = HINTS.get(Reason(ready.reason))
        if hint:
            click.echo(click.wrap_text(hint, width=96, initial_indent="  hint: ",
                                       subsequent_indent="        "))
        click.echo(f"  more: docs/troubleshooting.md, reason {ready.reason}")
        return 1

    raise SystemExit(asyncio.run(run()))
