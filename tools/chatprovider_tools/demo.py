"""``chatprovider up``: the whole product on one machine, with no cluster and no Docker."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import click
import httpx

from chatprovider.api.crd import render
from chatprovider.api.v1alpha1 import ServerType
from chatprovider.cli.run import embedded_relay, serve
from chatprovider.controller.app import OperatorApp
from chatprovider.logs import setup_logging
from chatprovider.relay import AuthMode, RelaySettings
from chatprovider.settings import OperatorSettings
from chatprovider_tools.controlplane import BinariesNotFound, ControlPlane, ControlPlaneError
from chatprovider_tools.controlplane.plane import free_port
from chatprovider_tools.devserver import DevServer

__all__ = ["up"]

NAMESPACE = "demo"


def _step(n: int, text: str) -> None:
    click.secho(f"[{n}/6] ", fg="cyan", nl=False, err=True)
    click.echo(text, err=True)


def _manifest(endpoint: str, api_key: str | None, server_type: str) -> str:
    docs: list[dict[str, object]] = [{"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": NAMESPACE}}]
    spec: dict[str, object] = {"endpoint": endpoint, "serverType": server_type,
                               "displayName": "Demo provider",
                               "description": "Created by `chatprovider up`",
                               "tags": ["demo"], "discovery": {"interval": "30s"}}
    if api_key:
        docs.append({"apiVersion": "v1", "kind": "Secret",
                     "metadata": {"name": "demo-api-key", "namespace": NAMESPACE},
                     "stringData": {"apiKey": api_key}})
        spec["apiKeySecretRef"] = {"name": "demo-api-key", "key": "apiKey"}
    docs.append({"apiVersion": "ai.chatprovider.dev/v1alpha1", "kind": "ChatProvider",
                 "metadata": {"name": "demo", "namespace": NAMESPACE}, "spec": spec})
    return "\n---\n".join(json.dumps(d) for d in docs)


class _Kubectl:
    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.argv = [str(binary), f"--kubeconfig={kubeconfig}"]

    def __call__(self, *args: str, input: str | None = None) -> str:
        proc = subprocess.run([*self.argv, *args], input=input, capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise click.ClickException(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout


def _chat(relay_url: str, model: str) -> str:
    """One streamed chat completion through the relay; prints tokens as they arrive."""
    body = {"model": model, "stream": True, "max_tokens": 32,
            "messages": [{"role": "user", "content": "Say hello to the new provider."}]}
    text = []
    with httpx.stream("POST", f"{relay_url}/v1/chat/completions", json=body, timeout=60) as r:
        if r.status_code != 200:
            r.read()
            raise click.ClickException(f"relay answered {r.status_code}: {r.text[:300]}")
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") or ""
                text.append(piece)
                click.echo(piece, nl=False)
    click.echo()
    return "".join(text)


@click.command()
@click.option("--upstream", metavar="URL", envvar="CHATPROVIDER_UP_UPSTREAM", show_envvar=True,
              help="Use this OpenAI-compatible server (e.g. http://localhost:11434 for Ollama) "
                   "instead of the built-in demo server.")
@click.option("--api-key-env", metavar="VAR", help="Environment variable holding the "
              "upstream's API key (with --upstream).")
@click.option("--server-type", default="generic", show_default=True,
              type=click.Choice([t.value for t in ServerType]),
              help="spec.serverType of the demo provider (with --upstream; messages only).")
@click.option("--relay-port", default=8080, show_default=True, type=int,
              envvar="CHATPROVIDER_RELAY_PORT", show_envvar=True,
              help="Port of the relay on 127.0.0.1 (0 picks a free one).")
@click.option("--playground/--no-playground", default=True, show_default=True,
              envvar="CHATPROVIDER_UP_PLAYGROUND", show_envvar=True,
              help="Serve the browser chat playground at the relay's root URL.")
@click.option("--ready-timeout", default=60.0, show_default=True, type=click.FloatRange(1),
              metavar="SECONDS", help="How long to wait for the provider to become Ready "
              "before printing why it is not and exiting.")
@click.option("--once", is_flag=True, help="Exit after the first answer (for scripts and CI).")
@click.option("--log-level", default="WARNING", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Log level of the operator and the relay (their logs go to stderr).")
def up(upstream: str | None, api_key_env: str | None, server_type: str, relay_port: int,
       playground: bool, ready_timeout: float, once: bool, log_level: str) -> None:
    """Run the whole product on this machine, with no cluster and no Docker.

    \b
    Six steps, each printed as [n/6]:
      1. find etcd, kube-apiserver and kubectl (built by `make setup`);
      2. start them on loopback, in a temporary directory;
      3. install the ChatProvider CRD;
      4. start the upstream: a built-in demo server, or --upstream;
      5. start the operator and its relay (authentication off: local use only);
      6. apply ChatProvider demo/demo, wait for Ready, stream one chat through the relay.

    Then print the KUBECONFIG, the relay's base URL and the playground's URL, and keep running
    until Ctrl-C (or exit at once with --once). Everything is removed on exit.

    \b
    Examples:
      chatprovider up
      chatprovider up --upstream http://localhost:11434 --server-type ollama
      VLLM_KEY=... chatprovider up --upstream http://gpu-box:8000 --api-key-env VLLM_KEY
    """
    setup_logging(log_level)
    key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not key:
        raise click.BadParameter(f"${api_key_env} is empty or unset", param_hint="--api-key-env")
    if api_key_env and not upstream:
        raise click.BadParameter("only with --upstream (the demo server has its own key)",
                                 param_hint="--api-key-env")
    _step(1, "finding the control-plane binaries (build them with `make setup`)")
    try:
        plane = ControlPlane()
    except BinariesNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    server: DevServer | None = None
    try:
        _step(2, "starting etcd and kube-apiserver on loopback ...")
        try:
            plane.start()
        except ControlPlaneError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"      ready in {plane.startup_seconds:.1f}s at {plane.server}", err=True)
        kubectl = _Kubectl(plane.binaries.kubectl, plane.kubeconfig)
        _step(3, "installing the ChatProvider CRD")
        kubectl("apply", "--server-side", "-f", "-", input=render())
        kubectl("wait", "--for=condition=Established", "--timeout=60s",
                "crd/chatproviders.ai.chatprovider.dev")
        _wait_served(kubectl)
        if upstream:
            endpoint = upstream
            _step(4, f"upstream: {endpoint}")
        else:
            server = DevServer("vllm", api_keys={"demo-key"}).start()
            endpoint, key, server_type = server.base_url, "demo-key", "vllm"
            _step(4, f"upstream: the built-in demo server (looks like vLLM) at {endpoint}")
        port = relay_port or free_port()
        relay_url = f"http://127.0.0.1:{port}"
        _step(5, f"starting the operator and its relay at {relay_url} (auth: none"
                 f"{', playground at /' if playground else ''})")
        settings = OperatorSettings(kubeconfig=str(plane.kubeconfig), min_retry_seconds=1.0)
        relay = embedded_relay(RelaySettings(host="127.0.0.1", port=port,
                                             auth_mode=AuthMode.NONE, playground=playground))
        app = OperatorApp(settings, relay=relay)

        async def main(stop: asyncio.Event) -> None:
            task = asyncio.create_task(app.run(stop))
            finished = False
            try:
                await asyncio.to_thread(_demo, kubectl, endpoint, key, server_type, relay_url,
                                        plane, once, playground, ready_timeout)
                finished = True
            finally:
                if once or not finished:
                    stop.set()
                await task

        serve(main)
    finally:
        if server is not None:
            server.stop()
        plane.stop()
        click.echo("stopped; everything cleaned up", err=True)


def _wait_served(kubectl: _Kubectl, timeout: float = 30.0) -> None:
    """An Established CRD may still answer 429 while its storage initialises."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            kubectl("get", "chatproviders", "-A")
            return
        except click.ClickException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _conditions(kubectl: _Kubectl) -> list[dict[str, str]]:
    body = json.loads(kubectl("get", "-n", NAMESPACE, "chatprovider/demo", "-o", "json"))
    return list((body.get("status") or {}).get("conditions") or [])


def _wait_ready(kubectl: _Kubectl, endpoint: str, timeout: float) -> None:
    """Wait for Ready=True; show each new reason it is not; on timeout explain and fail."""
    deadline = time.monotonic() + timeout
    shown = ""
    conditions: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        conditions = _conditions(kubectl)
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        if ready is not None and ready.get("status") == "True":
            return
        if ready is not None and ready.get("reason") != shown:
            shown = str(ready.get("reason"))
            click.echo(f"      not Ready yet: {shown}: {ready.get('message', '')} "
                       "(the operator retries)", err=True)
        time.sleep(0.3)
    click.secho(f"ChatProvider {NAMESPACE}/demo is not Ready after {timeout:.0f}s. Its "
                "conditions:", bold=True, err=True)
    for c in conditions:
        click.echo(f"  {c.get('type', ''):<18} {c.get('status', ''):<8} "
                   f"{c.get('reason', ''):<22} {c.get('message', '')}", err=True)
    raise click.ClickException(
        f"the provider did not become Ready. Diagnose the endpoint step by step with\n"
        f"  chatprovider check {endpoint}\n"
        "and look the reason up in docs/troubleshooting.md.")


def _demo(kubectl: _Kubectl, endpoint: str, key: str | None, server_type: str, relay_url: str,
          plane: ControlPlane, once: bool, playground: bool, ready_timeout: float) -> None:
    _step(6, f"applying ChatProvider {NAMESPACE}/demo and waiting for Ready")
    kubectl("apply", "-f", "-", input=_manifest(endpoint, key, server_type))
    started = time.monotonic()
    _wait_ready(kubectl, endpoint, ready_timeout)
    click.echo(f"      Ready after {time.monotonic() - started:.1f}s", err=True)
    click.echo(kubectl("get", "chatproviders", "-A", "-o", "wide"))
    models = json.loads(httpx.get(f"{relay_url}/v1/models", timeout=10).text)["data"]
    model = models[0]["id"]
    click.secho(f"chat through the relay with model {model}:", bold=True)
    _chat(relay_url, model)
    heading = ("While `chatprovider up` runs (without --once), from another terminal:" if once
               else "Everything is running. In another terminal:")
    kubectl_path = [] if shutil.which("kubectl") else [
        f"export PATH={plane.binaries.kubectl.parent}:$PATH   # the kubectl of `make setup`"]
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    lines = [
        *kubectl_path,
        f"export KUBECONFIG={plane.kubeconfig}",
        "kubectl get chatproviders -A",
        f"kubectl describe chatprovider -n {NAMESPACE} demo",
        "",
        f"export OPENAI_BASE_URL={relay_url}/v1 OPENAI_API_KEY=unused",
        "curl -s $OPENAI_BASE_URL/models",
        "curl -s $OPENAI_BASE_URL/chat/completions -H 'Content-Type: application/json' \\",
        f"  -d '{body}'",
    ]
    click.echo(f"\n{heading}\n")
    click.echo("\n".join(f"  {line}" if line else "" for line in lines))
    click.echo()
    if playground:
        click.secho(f"Playground: open {relay_url}/ in a browser.", bold=True)
    if not once:
        click.echo("Press Ctrl-C to stop.", err=True)
