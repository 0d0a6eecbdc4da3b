"""`chatprovider run` as a process: the operator and its embedded relay, with Kubernetes RBAC
deciding who may use which provider, and the official OpenAI SDK as the client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from tests.conftest import RELAY_AUDIENCE

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
        models = [m.id for m in app.models.list()]
        model = f"{namespace}/vllm/{upstream.models[0]}"
        assert model in models
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
