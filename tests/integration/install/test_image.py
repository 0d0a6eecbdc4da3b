"""The image itself, built from this tree by ``scripts/build-image.sh`` (Debian's docker.io, a
debootstrap base; ``make setup`` installs both) and run by Docker as a pod would run it: its
user, a read-only root filesystem, a writable ``/tmp`` only, no capabilities; against the
harness's real API server on loopback (host network), with a real upstream.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from chatprovider_tools.controlplane.plane import free_port
from chatprovider_tools.devserver import DevServer

from .conftest import NONROOT, ROOT, Process, missing, wait_http

DOCKER = "/usr/bin/docker"  # Debian's client, which matches its daemon's API
IMAGE = f"chatprovider-operator:test-{uuid.uuid4().hex[:8]}"
#: How a pod of the chart runs it (its securityContext), short of the seccomp profile.
POD_LIKE = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges"]


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The image of this tree (the build script is idempotent; only changed layers rebuild)."""
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "build-image.sh")],
                          env={**os.environ, "IMAGE": IMAGE}, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        missing("the image", f"scripts/build-image.sh failed (run `make setup`):\n"
                             f"{proc.stderr[-3000:]}")
    try:
        yield IMAGE
    finally:
        subprocess.run([DOCKER, "image", "rm", "-f", IMAGE], capture_output=True, timeout=60)


def docker_run(image: str, *argv: str, entrypoint: str | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    flags = [*POD_LIKE, *(["--entrypoint", entrypoint] if entrypoint else [])]
    return subprocess.run([DOCKER, "run", "--rm", *flags, image, *argv],
                          capture_output=True, text=True, timeout=timeout)


def test_the_image_runs_as_the_numeric_user_with_a_read_only_root(image: str) -> None:
    config = json.loads(subprocess.run([DOCKER, "image", "inspect", image], check=True,
                                       capture_output=True, text=True).stdout)[0]["Config"]
    assert config["User"] == f"{NONROOT}:{NONROOT}"  # numeric: runAsNonRoot can verify it
    assert config["Entrypoint"] == ["chatprovider"] and config["Cmd"] == ["run"]
    proc = docker_run(image, "-c", "id -u; id -g; touch /opt/x 2>&1 || echo read-only",
                      entrypoint="sh")
    assert proc.stdout.split()[:2] == [str(NONROOT), str(NONROOT)]
    assert proc.stdout.strip().endswith("read-only"), proc.stdout


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["relay", "--help"]],
                         ids=lambda a: " ".join(a))
def test_both_commands_answer(image: str, argv: list[str]) -> None:
    proc = docker_run(image, *argv)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout


def test_the_image_holds_the_product_and_not_its_workshop(image: str) -> None:
    script = ("cd /opt/chatprovider/lib/python3*/site-packages && ls -d */ && "
              "ls /opt/chatprovider/bin && (ls /src 2>&1 || true) && "
              "find chatprovider -type f ! -name '*.py' ! -name '*.pyc'")
    proc = docker_run(image, "-c", script, entrypoint="sh")
    assert proc.returncode == 0, proc.stderr
    names = set(proc.stdout.split())
    assert "chatprovider/" in names
    for absent in ("chatprovider_tools/", "pip/", "kubernetes/", "tests/", "pip"):
        assert absent not in names, f"{absent} is in the image"
    assert "chatprovider" in names  # the console script
    assert "No such file or directory" in proc.stdout  # no build context left in the image
    # every data file of the package (py.typed, the playground's static files) ships too
    source = ROOT / "operator"
    data = {p.relative_to(source).as_posix() for p in (source / "chatprovider").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert data and data <= names, sorted(data - names)


@pytest.fixture
def kubeconfig_for_image(kubeconfig: Path, tmp_path: Path) -> Path:
    """The admin kubeconfig (CA embedded), readable by the image's user only."""
    directory = tmp_path / "kube"
    directory.mkdir()
    path = directory / "config"
    shutil.copy(kubeconfig, path)
    if os.geteuid() == 0:
        os.chown(directory, NONROOT, NONROOT)
        os.chown(path, NONROOT, NONROOT)
    path.chmod(0o600)
    return directory


def test_the_operator_in_the_image_makes_a_provider_ready_and_relays_to_it(
        image: str, kubeconfig_for_image: Path, chatprovider_crd: Path, namespace: str,
        kubectl: Callable[..., subprocess.CompletedProcess[str]],
        processes: Callable[..., Process], tmp_path: Path) -> None:
    relay_port, health_port = free_port(), free_port()
    name = f"image-{uuid.uuid4().hex[:8]}"
    with DevServer("vllm", models=["qwen"]) as upstream:
        operator = processes(
            [DOCKER, "run", "--rm", "--name", name, "--network", "host", *POD_LIKE,
             "-v", f"{kubeconfig_for_image}:/kube:ro", "-e", f"POD_ID={name}", image, "run",
             "--kubeconfig", "/kube/config", "--namespace", namespace,
             "--lease-name", name, "--lease-namespace", namespace,
             "--health-port", str(health_port), "--relay-host", "127.0.0.1",
             "--relay-port", str(relay_port), "--relay-auth", "none"],
            tmp_path / "operator.log")
        try:
            kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
                "apiVersion": "ai.chatprovider.dev/v1alpha1", "kind": "ChatProvider",
                "metadata": {"name": "vllm"},
                "spec": {"endpoint": upstream.url, "serverType": "vllm"}}))
            kubectl("wait", "-n", namespace, "chatprovider/vllm", "--for=condition=Ready",
                    "--timeout=60s")
            wait_http(f"http://127.0.0.1:{health_port}/healthz", operator)
            # the relay learns of Ready through its own watch, a moment after the API server
            # has it (CI once asked in between and got 503 provider_not_ready)
            wait_http(f"http://127.0.0.1:{relay_port}/v1/models", operator,
                      until=lambda r: f"{namespace}/vllm/qwen" in {
                          m["id"] for m in r.json()["data"]})
            answer = httpx.post(f"http://127.0.0.1:{relay_port}/v1/chat/completions",
                                json={"model": f"{namespace}/vllm/qwen",
                                      "messages": [{"role": "user", "content": "Hi"}]},
                                timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.headers["X-ChatProvider"] == f"{namespace}/vllm"
            assert answer.json()["choices"][0]["message"]["content"]
        finally:
            # docker run passes SIGTERM on to the container: the operator's own graceful stop
            try:
                code = operator.stop(timeout=30)
            finally:
                subprocess.run([DOCKER, "rm", "-f", name], capture_output=True, timeout=60)
    assert code == 0, operator.output()[-3000:]
