"""What ``chatprovider up`` puts into its control plane, and the kubectl it does it with.

- the demo provider ``demo/demo``, registered as a user would register any OpenAI-compatible
  server: the full ``/v1/chat/completions`` URL as ``spec.endpoint``, the key in a Secret,
  models discovered from ``GET /v1/models``;
- for ``--relay-auth kubernetes``: the chart's user ClusterRoles (``manifests/user-roles.yaml``,
  rendered from the chart), a ServiceAccount ``demo/app`` bound to ``chatprovider-user`` in the
  namespace (it may ``use`` the provider), and ``demo/stranger`` with no binding (it sees none).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import click

from chatprovider.settings import DEFAULT_TOKEN_AUDIENCE
from chatprovider_tools.generators.paths import repository_root

__all__ = [
    "APP_ACCOUNT", "NAMESPACE", "STRANGER_ACCOUNT", "USER_ROLE", "Kubectl", "provider_manifest",
    "rbac_manifest", "token_command", "user_roles",
]

NAMESPACE = "demo"
APP_ACCOUNT = "app"
"""The ServiceAccount bound to ``chatprovider-user`` in :data:`NAMESPACE`."""
STRANGER_ACCOUNT = "stranger"
"""A ServiceAccount with no binding: the relay lists it no model."""
USER_ROLE = "chatprovider-user"


class Kubectl:
    """The kubectl of ``make setup`` against one kubeconfig; a failure is a one-line error."""

    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.argv = [str(binary), f"--kubeconfig={kubeconfig}"]

    def __call__(self, *args: str, input: str | None = None) -> str:
        proc = subprocess.run([*self.argv, *args], input=input, capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise click.ClickException(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def apply(self, documents: list[dict[str, object]]) -> None:
        self("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in documents))

    def token(self, account: str, audience: str = DEFAULT_TOKEN_AUDIENCE,
              duration: str = "1h") -> str:
        """A bound token of ``demo/<account>`` for the relay's audience (TokenRequest)."""
        return self("create", "token", account, "-n", NAMESPACE, f"--audience={audience}",
                    f"--duration={duration}").strip()

    def wait_served(self, timeout: float = 30.0) -> None:
        """An Established CRD may still answer 429 while its storage initialises."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self("get", "chatproviders", "-A")
                return
            except click.ClickException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def conditions(self) -> list[dict[str, str]]:
        body = json.loads(self("get", "-n", NAMESPACE, "chatprovider/demo", "-o", "json"))
        return list((body.get("status") or {}).get("conditions") or [])

    def wait_ready(self, endpoint: str, timeout: float) -> None:
        """Wait for Ready=True; show each new reason it is not; on timeout explain and fail."""
        deadline = time.monotonic() + timeout
        shown = ""
        conditions: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            conditions = self.conditions()
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


def token_command(account: str = APP_ACCOUNT, audience: str = DEFAULT_TOKEN_AUDIENCE) -> str:
    """The shell command that mints what :meth:`Kubectl.token` mints."""
    return f"kubectl create token {account} -n {NAMESPACE} --audience {audience} --duration 1h"


def provider_manifest(endpoint: str, api_key: str | None, server_type: str
                      ) -> list[dict[str, object]]:
    """The namespace, the key's Secret (when there is a key) and ChatProvider demo/demo."""
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
    return docs


def user_roles() -> str:
    """The chart's user ClusterRoles (viewer, editor, user), as ``manifests/`` renders them."""
    path = repository_root() / "manifests" / "user-roles.yaml"
    try:
        return path.read_text()
    except OSError as exc:
        raise click.ClickException(f"cannot read the chart's user roles at {path}: {exc}; "
                                   "use --relay-auth none, or run from a source checkout") from exc


def rbac_manifest() -> list[dict[str, object]]:
    """``demo/app`` may use every provider of the namespace; ``demo/stranger`` may not."""
    accounts: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": NAMESPACE}}
        for name in (APP_ACCOUNT, STRANGER_ACCOUNT)]
    binding: dict[str, object] = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": f"{APP_ACCOUNT}-uses-providers", "namespace": NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": USER_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": APP_ACCOUNT, "namespace": NAMESPACE}]}
    return [*accounts, binding]
