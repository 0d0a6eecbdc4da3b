"""The kind path for users with Docker (scripts/kind-e2e.sh, run on GitHub-hosted runners only):
what can be checked without Docker is checked here."""

from __future__ import annotations

import subprocess

import yaml

from chatprovider.api.v1alpha1 import ChatProvider
from chatprovider.devserver.cli import parse_args

from .conftest import CHART, ROOT

SCRIPT = ROOT / "scripts" / "kind-e2e.sh"
EXAMPLE = ROOT / "examples" / "kind" / "devserver.yaml"
WORKFLOW = ROOT / ".github" / "workflows" / "kind-e2e.yaml"


def _docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]


def test_the_script_parses_and_uses_what_it_should() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = SCRIPT.read_text()
    for step in ("kind create cluster", "docker build", "kind load docker-image",
                 "upgrade --install", "examples/kind/devserver.yaml", "port-forward",
                 "/v1/chat/completions", "--clusterrole=chatprovider-user"):
        assert step in text, step


def test_the_workflow_runs_the_script_and_ci_does_not() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = workflow["jobs"]["kind"]["steps"]
    assert any(s.get("run") == "scripts/kind-e2e.sh" for s in steps)
    assert set(workflow["jobs"]["kind"]["strategy"]["matrix"]["relay-mode"]) == {
        "embedded", "separate"}
    assert "kind" not in (ROOT / ".ci" / "run").read_text()


def test_the_example_image_is_the_one_the_script_replaces() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    [deployment] = [d for d in _docs() if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith(values["image"]["repository"] + ":")
    assert "s#image: ghcr.io/chatprovider/chatprovider-operator:.*#" in SCRIPT.read_text()


def test_the_devserver_command_is_valid() -> None:
    [deployment] = [d for d in _docs() if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "chatprovider.devserver"]
    args = parse_args([a.replace("$(API_KEY)", "k") for a in container["args"]])
    assert (args.flavour, args.host, args.port, args.api_keys) == ("vllm", "0.0.0.0", 8000, ["k"])
    [provider] = [d for d in _docs() if d["kind"] == "ChatProvider"]
    ChatProvider.model_validate(provider)
    assert provider["spec"]["endpoint"] == "http://devserver:8000/v1"


def test_the_api_server_accepts_the_example(kubectl, chatprovider_crd, namespace) -> None:
    proc = kubectl("apply", "--dry-run=server", "--validate=strict", "-n", namespace,
                   "-f", str(EXAMPLE))
    assert "chatprovider.ai.chatprovider.dev/devserver created (server dry run)" in proc.stdout
