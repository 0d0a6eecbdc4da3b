"""``chatprovider up``: the whole product on one machine, with no cluster and no Docker.

By default the upstream is a real model (llama.cpp's ``llama-server`` with Gemma 3 270M,
:mod:`chatprovider_tools.llamaserver`) and the relay checks Kubernetes tokens, as in a cluster:
the demo mints one for a ServiceAccount allowed to use the provider (:mod:`.demo_cluster`).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import click
import httpx

from chatprovider.api.crd import RESOURCES, render_all
from chatprovider.api.v1alpha1 import ServerType
from chatprovider.cli.ports import ensure_free, explain_bind_errors
from chatprovider.cli.run import embedded_relay, serve
from chatprovider.controller.app import OperatorApp
from chatprovider.logs import setup_logging
from chatprovider.relay import AuthMode, RelaySettings
from chatprovider.settings import DEFAULT_TOKEN_AUDIENCE, DEMO_RELAY_PORT, OperatorSettings
from chatprovider_tools.controlplane import BinariesNotFound, ControlPlane, ControlPlaneError
from chatprovider_tools.controlplane.plane import free_port
from chatprovider_tools.demo_cluster import (
    APP_ACCOUNT,
    NAMESPACE,
    STRANGER_ACCOUNT,
    USER_ROLE,
    Kubectl,
    provider_manifest,
    rbac_manifest,
    token_command,
    user_roles,
)
from chatprovider_tools.devserver import DevServer
from chatprovider_tools.llamaserver import LlamaServer, LlamaServerError, check_installed

__all__ = ["up"]

LLAMA, DEV = "llama-server", "dev"
PROMPT = "Say hello to the new provider."


def _step(n: int, text: str) -> None:
    click.secho(f"[{n}/6] ", fg="cyan", nl=False, err=True)
    click.echo(text, err=True)


@dataclass
class _Demo:
    """What the steps share."""

    kubectl: Kubectl
    plane: ControlPlane
    endpoint: str
    key: str | None
    server_type: str
    relay_url: str
    auth: AuthMode
    once: bool
    playground: bool
    ready_timeout: float
    token: str | None = None  # demo/app's, in kubernetes mode

    def headers(self, token: str | None = None) -> dict[str, str]:
        token = token or self.token
        return {"Authorization": f"Bearer {token}"} if token else {}


def _chat(demo: _Demo, model: str) -> str:
    """One streamed chat completion through the relay; prints tokens as they arrive, then the
    upstream's own count of tokens (and speed, when it reports it)."""
    body = {"model": model, "stream": True, "max_tokens": 32,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": PROMPT}]}
    text, usage, timings = [], None, None
    with httpx.stream("POST", f"{demo.relay_url}/v1/chat/completions", json=body, timeout=120,
                      headers=demo.headers(), trust_env=False) as r:
        if r.status_code != 200:
            r.read()
            raise click.ClickException(f"relay answered {r.status_code}: {r.text[:300]}")
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage, timings = chunk.get("usage") or usage, chunk.get("timings") or timings
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") or ""
                text.append(piece)
                click.echo(piece, nl=False)
    click.echo()
    if usage:
        speed = f", {timings['predicted_per_second']:.0f} tokens/s" \
            if timings and timings.get("predicted_per_second") else ""
        click.echo(f"      ({usage.get('prompt_tokens')} prompt + "
                   f"{usage.get('completion_tokens')} completion tokens, counted by the "
                   f"upstream{speed})", err=True)
    return "".join(text)


@click.command()
@click.option("--upstream", default=LLAMA, show_default=True, metavar="llama-server|dev|URL",
              envvar="CHATPROVIDER_UP_UPSTREAM", show_envvar=True,
              help="llama-server: llama.cpp's server with Gemma 3 270M, a real model (built by "
                   "`make setup-demo`); dev: the built-in deterministic server (instant, no "
                   "model); or the URL of your own OpenAI-compatible server (for example "
                   "http://localhost:11434/v1/chat/completions for Ollama).")
@click.option("--api-key-env", metavar="VAR", help="Environment variable holding the "
              "upstream's API key (with --upstream URL).")
@click.option("--server-type", default="generic", show_default=True,
              type=click.Choice([t.value for t in ServerType]),
              help="spec.serverType of the demo provider (with --upstream URL; messages only).")
@click.option("--relay-auth", default=AuthMode.KUBERNETES.value, show_default=True,
              type=click.Choice([m.value for m in AuthMode]), envvar="CHATPROVIDER_UP_RELAY_AUTH",
              show_envvar=True,
              help="kubernetes: the relay checks tokens as in a cluster; the demo binds "
                   f"{USER_ROLE} for ServiceAccount {NAMESPACE}/{APP_ACCOUNT} and prints how to "
                   "mint its token. none: no authentication (anyone on this machine).")
@click.option("--relay-port", default=DEMO_RELAY_PORT, show_default=True, type=int,
              envvar="CHATPROVIDER_UP_RELAY_PORT", show_envvar=True,
              help="Port of the relay on 127.0.0.1 (0 picks a free one).")
@click.option("--playground/--no-playground", default=True, show_default=True,
              envvar="CHATPROVIDER_UP_PLAYGROUND", show_envvar=True,
              help="Serve the browser chat playground at the relay's root URL.")
@click.option("--ready-timeout", default=60.0, show_default=True, type=click.FloatRange(1),
              metavar="SECONDS", help="How long to wait for the provider to become Ready "
              "before printing why it is not and exiting.")
@click.option("--upstream-log", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Write llama-server's log here (default: beside the control plane's, "
                   "removed on exit).")
@click.option("--once", is_flag=True, help="Exit after the first answer (for scripts and CI).")
@click.option("--log-level", default="WARNING", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Log level of the operator and the relay (their logs go to stderr).")
def up(upstream: str, api_key_env: str | None, server_type: str, relay_auth: str,
       relay_port: int, playground: bool, ready_timeout: float, upstream_log: str | None,
       once: bool, log_level: str) -> None:
    """Run the whole product on this machine, with no cluster and no Docker.

    \b
    Six steps, each printed as [n/6]:
      1. find etcd, kube-apiserver and kubectl (built by `make setup-demo`);
      2. start them on loopback, in a temporary directory;
      3. install the ChatProvider CRD (and the chart's user ClusterRoles);
      4. start the upstream: llama-server with a real model, the dev server, or --upstream URL;
      5. start the operator and its relay;
      6. apply ChatProvider demo/demo (its key in a Secret) and, with Kubernetes auth, a
         ServiceAccount allowed to use it; wait for Ready; stream one chat through the relay.

    Then print the KUBECONFIG, how to mint a token, curl and OpenAI SDK examples and the
    playground's URL, and keep running until Ctrl-C (or exit at once with --once). Everything
    is removed on exit.

    \b
    Examples:
      chatprovider up
      chatprovider up --upstream dev --relay-auth none
      chatprovider up --upstream http://localhost:11434/v1/chat/completions --server-type ollama
      VLLM_KEY=... chatprovider up --upstream http://gpu-box:8000/v1 --api-key-env VLLM_KEY
    """
    setup_logging(log_level)
    auth = AuthMode(relay_auth)
    own_url = upstream not in (LLAMA, DEV)
    key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not key:
        raise click.BadParameter(f"${api_key_env} is empty or unset", param_hint="--api-key-env")
    if api_key_env and not own_url:
        raise click.BadParameter(f"only with --upstream URL ({upstream} has its own key)",
                                 param_hint="--api-key-env")
    if own_url and not upstream.startswith(("http://", "https://")):
        raise click.BadParameter(f"{upstream!r}: expected llama-server, dev or an http(s) URL",
                                 param_hint="--upstream")
    ensure_free("127.0.0.1", relay_port, "--relay-port")
    if upstream == LLAMA:
        try:
            check_installed()
        except LlamaServerError as exc:
            raise click.ClickException(str(exc)) from exc
    _step(1, "finding the control-plane binaries (build them with `make setup-demo`)")
    try:
        plane = ControlPlane()
    except BinariesNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    stop_upstream = None
    try:
        _step(2, "starting etcd and kube-apiserver on loopback ...")
        try:
            plane.start()
        except ControlPlaneError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"      ready in {plane.startup_seconds:.1f}s at {plane.server}", err=True)
        kubectl = Kubectl(plane.binaries.kubectl, plane.kubeconfig)
        _step(3, "installing the CRDs (ChatProvider, ChatQuota, ChatModel)" +
              (f" and the chart's user ClusterRoles ({USER_ROLE}, ...)"
               if auth is AuthMode.KUBERNETES else ""))
        kubectl("apply", "--server-side", "-f", "-", input=render_all())
        if auth is AuthMode.KUBERNETES:
            kubectl("apply", "-f", "-", input=user_roles())
        kubectl("wait", "--for=condition=Established", "--timeout=60s",
                *(f"crd/{resource.crd_name}" for resource in RESOURCES))
        kubectl.wait_served()
        if upstream == LLAMA:
            key = "sk-demo-" + secrets.token_hex(12)
            log_path = upstream_log or str(plane.workdir / "llama-server.log")
            _step(4, "upstream: llama.cpp's llama-server with Gemma 3 270M (a real model, on "
                     "this CPU) ...")
            try:
                llama = LlamaServer(api_key=key, log_path=Path(log_path)).start()
            except LlamaServerError as exc:
                raise click.ClickException(str(exc)) from exc
            stop_upstream = llama.stop
            endpoint, server_type = f"{llama.url}/chat/completions", "llamacpp"
            click.echo(f"      ready in {llama.startup_seconds:.1f}s at {llama.base_url} "
                       f"(log: {log_path})", err=True)
        elif upstream == DEV:
            server = DevServer("vllm", api_keys={"demo-key"}).start()
            stop_upstream = server.stop
            endpoint, key, server_type = f"{server.url}/chat/completions", "demo-key", "vllm"
            _step(4, f"upstream: the built-in dev server (looks like vLLM) at {server.base_url}")
        else:
            endpoint = upstream
            _step(4, f"upstream: {endpoint}")
        port = relay_port or free_port()
        relay_url = f"http://127.0.0.1:{port}"
        _step(5, f"starting the operator and its relay at {relay_url} (auth: {auth.value}"
                 f"{', playground at /' if playground else ''})")
        settings = OperatorSettings(kubeconfig=str(plane.kubeconfig), min_retry_seconds=1.0,
                                    health_port=0)
        relay = embedded_relay(RelaySettings(host="127.0.0.1", port=port, auth_mode=auth,
                                             playground=playground), settings)
        app = OperatorApp(settings, relay=relay)
        demo = _Demo(kubectl, plane, endpoint, key, server_type, relay_url, auth, once,
                     playground, ready_timeout)

        async def main(stop: asyncio.Event) -> None:
            task = asyncio.create_task(app.run(stop))
            finished = False
            try:
                await asyncio.to_thread(_run_demo, demo)
                finished = True
            finally:
                if once or not finished:
                    stop.set()
                await task

        with explain_bind_errors("--relay-port"):
            serve(main)
    finally:
        if stop_upstream is not None:
            stop_upstream()
        plane.stop()
        click.echo("stopped; everything cleaned up", err=True)


def _models(demo: _Demo, token: str | None = None) -> list[str]:
    answer = httpx.get(f"{demo.relay_url}/v1/models", headers=demo.headers(token), timeout=10,
                       trust_env=False)
    if answer.status_code != 200:
        raise click.ClickException(f"GET /v1/models answered {answer.status_code}: "
                                   f"{answer.text[:300]}")
    return [m["id"] for m in answer.json()["data"]]


def _wait_listed(demo: _Demo) -> list[str]:
    """The relay lists a provider once it has seen its Ready status (a moment after)."""
    deadline = time.monotonic() + demo.ready_timeout
    while not (models := _models(demo)):
        if time.monotonic() > deadline:
            raise click.ClickException("the provider is Ready but the relay lists no model")
        time.sleep(0.2)
    return models


def _run_demo(demo: _Demo) -> None:
    kubectl = demo.kubectl
    rbac = demo.auth is AuthMode.KUBERNETES
    _step(6, f"applying ChatProvider {NAMESPACE}/demo" +
          (f" and ServiceAccount {NAMESPACE}/{APP_ACCOUNT} (bound to {USER_ROLE})" if rbac else "")
          + ", waiting for Ready")
    kubectl.apply(provider_manifest(demo.endpoint, demo.key, demo.server_type))
    if rbac:
        kubectl.apply(rbac_manifest())
        demo.token = kubectl.token(APP_ACCOUNT)
    started = time.monotonic()
    kubectl.wait_ready(demo.endpoint, demo.ready_timeout)
    click.echo(f"      Ready after {time.monotonic() - started:.1f}s", err=True)
    click.echo(kubectl("get", "chatproviders", "-A", "-o", "wide"))
    model = _wait_listed(demo)[0]
    who = f" as {NAMESPACE}/{APP_ACCOUNT}" if rbac else ""
    click.secho(f"chat through the relay{who} with model {model}:", bold=True)
    _chat(demo, model)
    if rbac:
        seen = _models(demo, kubectl.token(STRANGER_ACCOUNT))
        click.echo(f"ServiceAccount {NAMESPACE}/{STRANGER_ACCOUNT} has no binding: the relay "
                   f"lists it {len(seen)} models.")
    _print_next_steps(demo, model)


def _print_next_steps(demo: _Demo, model: str) -> None:
    heading = ("While `chatprovider up` runs (without --once), from another terminal:"
               if demo.once else "Everything is running. In another terminal:")
    kubectl_path = [] if shutil.which("kubectl") else [
        f"export PATH={demo.plane.binaries.kubectl.parent}:$PATH   # the kubectl of `make setup`"]
    body = json.dumps({"model": model, "max_tokens": 32,
                       "messages": [{"role": "user", "content": "hi"}]})
    if demo.auth is AuthMode.KUBERNETES:
        key_line = f"export OPENAI_API_KEY=$({token_command()})"
        auth_header = ' -H "Authorization: Bearer $OPENAI_API_KEY"'
    else:
        key_line, auth_header = "export OPENAI_API_KEY=unused   # --relay-auth none", ""
    sdk = (f"python -c 'from openai import OpenAI; print(OpenAI().chat.completions.create("
           f"model=\"{model}\", max_tokens=32, messages=[{{\"role\": \"user\", \"content\": "
           f"\"hi\"}}]).choices[0].message.content)'   # pip install openai")
    lines = [
        *kubectl_path,
        f"export KUBECONFIG={demo.plane.kubeconfig}",
        "kubectl get chatproviders -A",
        f"kubectl describe chatprovider -n {NAMESPACE} demo",
        "",
        f"export OPENAI_BASE_URL={demo.relay_url}/v1",
        key_line,
        f"curl -s $OPENAI_BASE_URL/models{auth_header}",
        f"curl -s $OPENAI_BASE_URL/chat/completions{auth_header} \\",
        f"  -H 'Content-Type: application/json' -d '{body}'",
        sdk,
    ]
    click.echo(f"\n{heading}\n")
    click.echo("\n".join(f"  {line}" if line else "" for line in lines))
    click.echo()
    if demo.playground:
        paste = (f" (paste the token of `{token_command()}`)"
                 if demo.auth is AuthMode.KUBERNETES else "")
        click.secho(f"Playground: open {demo.relay_url}/ in a browser{paste}.", bold=True)
    if demo.auth is AuthMode.KUBERNETES:
        click.echo(f"Tokens are for the audience {DEFAULT_TOKEN_AUDIENCE}: the relay refuses "
                   "any other (docs/clients.md).")
    if not demo.once:
        click.echo("Press Ctrl-C to stop.", err=True)
