"""`chatprovider run` as a process: the operator and its embedded relay, with Kubernetes RBAC
deciding who may use which provider, and the official OpenAI SDK as the client."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from tests.conftest import RELAY_AUDIENCE

from chatprovider.api.crd import render_all
from chatprovider_tools.controlplane import BinariesNotFound, ControlPlane, find_binaries
from chatprovider_tools.controlplane.plane import free_port
from chatprovider_tools.devserver import DevServer


@pytest.fixture()
def running_operator(kubeconfig, chatprovider_crd, tmp_path, namespace):
    port = free_port()
    log = tmp_path / "operator.log"
    out = log.open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "chatprovider"), "run", f"--kubeconfig={kubeconfig}",
         "--relay-host=127.0.0.1", f"--relay-port={port}", "--health-port=0",
         f"--namespace={namespace}", "--log-level=DEBUG"],
        stdout=out, stderr=subprocess.STDOUT, env={**os.environ},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        out.close()
        pytest.fail(f"operator did not start:\n{log.read_text()[-3000:]}")
    yield url, log
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(20) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        out.close()


def test_run_checks_providers_and_relays_for_authorized_service_accounts(
        running_operator, kubectl, namespace, mint_token):
    url, log = running_operator
    with DevServer("vllm", api_keys={"upstream-key"}) as upstream:
        manifests = [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vllm-key"},
             "stringData": {"apiKey": "upstream-key"}},
            {"apiVersion": "ai.chatprovider.dev/v1alpha1", "kind": "ChatProvider",
             "metadata": {"name": "vllm"},
             "spec": {"endpoint": upstream.base_url, "apiKeySecretRef": {"name": "vllm-key"}}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "use-vllm"},
             "rules": [{"apiGroups": ["ai.chatprovider.dev"], "resources": ["chatproviders"],
                        "resourceNames": ["vllm"], "verbs": ["use"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "app-uses-vllm"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": "use-vllm"},
             "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": namespace}]},
        ]
        kubectl("apply", "-n", namespace, "-f", "-",
                input="\n---\n".join(json.dumps(m) for m in manifests))
        kubectl("wait", "--for=condition=Ready", "-n", namespace, "chatprovider/vllm",
                "--timeout=30s")

        app = openai.OpenAI(base_url=f"{url}/v1", api_key=mint_token(namespace, "app",
                                                                       audience=RELAY_AUDIENCE))
        model = f"{namespace}/vllm/{upstream.models[0]}"
        # the relay learns of Ready through its own watch, a moment after the API server has it
        deadline = time.monotonic() + 30
        while model not in (models := [m.id for m in app.models.list()]):
            assert time.monotonic() < deadline, models
            time.sleep(0.1)
        answer = app.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=8)
        assert answer.choices[0].message.content
        stream = app.chat.completions.create(
            model=upstream.models[0], messages=[{"role": "user", "content": "hi"}], stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert all(r.headers.get("Authorization") == "Bearer upstream-key"
                   for r in upstream.requests)

        other = openai.OpenAI(base_url=f"{url}/v1", api_key=mint_token(namespace, "other",
                                                                         audience=RELAY_AUDIENCE))
        assert [m.id for m in other.models.list()] == []
        with pytest.raises(openai.PermissionDeniedError):
            other.chat.completions.create(model=model,
                                          messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="forged").models.list()
    assert "upstream-key" not in log.read_text()


def test_run_waits_for_the_crd_in_one_line_and_its_429s_are_no_errors(tmp_path):
    """``chatprovider run`` started before the CRD says once what is missing and what to do;
    when the CRD is then applied, its storage answers 429 "storage is (re)initializing" for a
    moment (kopf's watch meets it: it is there at once), which is retried quietly (INFO, with
    back-off). A fresh control plane, so that the CRD really is new."""
    try:
        binaries = find_binaries()
    except BinariesNotFound as exc:
        pytest.fail(str(exc), pytrace=False)
    with ControlPlane(binaries) as plane, DevServer("generic") as upstream:
        kubectl = [str(binaries.kubectl), f"--kubeconfig={plane.kubeconfig}"]
        port, log = free_port(), tmp_path / "operator.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "chatprovider"), "run",
                 f"--kubeconfig={plane.kubeconfig}", f"--relay-port={port}", "--health-port=0",
                 "--relay-auth=none", "--min-retry-seconds=1"],
                stdout=out, stderr=subprocess.STDOUT)
        try:
            missing = "the ChatProvider CRD is not installed in this cluster: install it with"
            deadline = time.monotonic() + 60
            while missing not in log.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            subprocess.run([*kubectl, "apply", "--server-side", "-f", "-"],
                           input=render_all(),
                           text=True, check=True, capture_output=True, timeout=60)
            provider = {"apiVersion": "ai.chatprovider.dev/v1alpha1", "kind": "ChatProvider",
                        "metadata": {"name": "p", "namespace": "default"},
                        "spec": {"endpoint": f"{upstream.url}/chat/completions"}}
            deadline = time.monotonic() + 60
            while subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(provider),
                                 text=True, capture_output=True, timeout=30).returncode != 0:
                assert time.monotonic() < deadline, "the CRD was never served"
                time.sleep(0.2)
            subprocess.run([*kubectl, "wait", "--for=condition=Ready", "chatprovider/p",
                            "--timeout=60s"], check=True, capture_output=True, timeout=90)
            deadline = time.monotonic() + 30
            while not httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).json()["data"]:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        finally:
            _stop(proc)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert text.count(missing) == 1, text[-3000:]
    errors = [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line]
    assert errors == [], "\n".join(errors)


@pytest.mark.parametrize("command", ["run", "relay"])
def test_an_unreachable_api_server_is_one_warning_then_quiet_retries(command, tmp_path):
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        server = f"https://127.0.0.1:{closed.getsockname()[1]}"
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": server,
                                                   "insecure-skip-tls-verify": True}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
        log = tmp_path / f"{command}.log"
        extra = ["--health-port=0"] if command == "run" else []
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "chatprovider"), command,
                 f"--kubeconfig={kubeconfig}", "--relay-port=0", "--log-level=DEBUG", *extra],
                stdout=out, stderr=subprocess.STDOUT)
        try:
            said = "WARNING chatprovider.watch: cannot list ChatProviders ("
            deadline = time.monotonic() + 30
            retried = "DEBUG   chatprovider.watch: listing ChatProviders failed ("
            # the positive control of "once": it has retried since, quietly (DEBUG)
            while said not in log.read_text() or retried not in log.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        finally:
            _stop(proc)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert text.count(said) == 1, text
    assert "is the API server reachable" in text
    assert not [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the command's own clean stop), SIGKILL if it has not ended within 30 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
