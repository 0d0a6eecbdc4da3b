"""The kind path for users with Docker (scripts/kind-e2e.sh, run on GitHub-hosted runners only):
what can be checked without Docker is checked here."""

from __future__ import annotations

import subprocess

import yaml

from chatprovider.api.v1alpha1 import ChatProvider
from chatprovider_tools.devserver.cli import parse_args

from .conftest import ROOT

SCRIPT = ROOT / "scripts" / "kind-e2e.sh"
EXAMPLE = ROOT / "examples" / "kind" / "devserver.yaml"


def _docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]


def test_the_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_the_devserver_command_is_valid() -> None:
    [deployment] = [d for d in _docs() if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "chatprovider_tools.devserver"]
    args = parse_args([a.replace("$(API_KEY)", "k") for a in container["args"]])
    assert (args.flavour, args.host, args.port, args.api_keys) == ("vllm", "0.0.0.0", 8000, ["k"])
    [provider] = [d for d in _docs() if d["kind"] == "ChatProvider"]
    ChatProvider.model_validate(provider)
    assert provider["spec"]["endpoint"] == "http://devserver:8000/v1"


def test_the_api_server_accepts_the_example(kubectl, chatprovider_crd, namespace) -> None:
    proc = kubectl("apply", "--dry-run=server", "--validate=strict", "-n", namespace,
                   "-f", str(EXAMPLE))
    assert "chatprovider.ai.chatprovider.dev/devserver created (server dry run)" in proc.stdout
