"""A canary API key driven through every success and failure path, at DEBUG: it must never
appear in logs, Events, status, metrics or relay answers (raw or base64). And the operator reads
Secrets only in a provider's own namespace, by name (proved with the API server's audit log)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import subprocess
import uuid

import httpx
import pytest
from kubernetes import client as k8s_client

from chatprovider_tools.controlplane.plane import free_port
from chatprovider_tools.devserver import DevServer
from tests.integration.controller.conftest import Providers
from tests.integration.relay.conftest import RelayThread, provider_body

from .conftest import CHART_LEASE, CHART_LEASE_FLAGS
from .harness import ChatproviderProcess, RawServer, http_head, wait_for

MSG = [{"role": "user", "content": "hi"}]


def forms(secret: str) -> list[str]:
    raw = secret.encode()
    return [secret, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
            base64.b64encode(b"Bearer " + raw).decode(), secret[4:-4]]


def echoing(kind: str) -> RawServer:
    """An upstream that echoes the Authorization header it received in its error answers."""
    holder: list[RawServer] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = holder[0].requests[-1].decode("latin-1")
        auth = next((line.split(":", 1)[1].strip() for line in head.split("\r\n")
                     if line.lower().startswith("authorization:")), "none")
        if kind == "envelope":
            body = json.dumps({"error": {"message": f"invalid request; you sent {auth}",
                                         "type": "invalid_request_error", "code": "bad"}})
            status = 500
        else:
            body, status = json.dumps({"detail": f"header Authorization={auth} refused"}), 400
        writer.write(http_head(status, "application/json", length=len(body)) + body.encode())
        await writer.drain()

    server = RawServer(answer)
    holder.append(server)
    return server


def test_canary_key_never_leaks(secured_cluster, tmp_path, caplog, figure) -> None:
    cluster = secured_cluster
    started = dt.datetime.now(dt.UTC)  # the audit log is shared with the other tests
    suffix = uuid.uuid4().hex[:8]
    team, other = f"team-{suffix}", f"other-{suffix}"
    core = k8s_client.CoreV1Api(cluster.api)
    for ns in (team, other):
        core.create_namespace({"metadata": {"name": ns}})
    canary = f"sk-canary-{uuid.uuid4().hex}"
    rotated = f"sk-canary-{uuid.uuid4().hex}"
    decoy = f"sk-decoy-{uuid.uuid4().hex}"
    secrets = [canary, rotated, decoy]
    providers = Providers(cluster.api, team)
    Providers(cluster.api, other).put_secret("key", {"apiKey": decoy})
    providers.put_secret("key", {"apiKey": canary})

    echo_envelope, echo_detail = echoing("envelope"), echoing("detail")
    answers: list[str] = []
    operator = ChatproviderProcess(cluster.kubeconfigs["operator"], tmp_path / "operator.log",
                                   log_level="DEBUG", lease=CHART_LEASE,
                                   extra=CHART_LEASE_FLAGS)
    try:
        with DevServer("generic", models=["m"], api_keys={canary}) as good, \
                DevServer("generic", models=["m"], api_keys={"someone-else"}) as rejecting:
            ref = {"apiKeySecretRef": {"name": "key"}}
            specs = {
                "ready": ({"endpoint": good.base_url, **ref}, "Ready"),
                "verify": ({"endpoint": good.base_url, **ref,
                            "verification": {"enabled": True, "model": "m"}}, "Ready"),
                "unauthorized": ({"endpoint": rejecting.base_url, **ref}, "Unauthorized"),
                "echo-envelope": ({"endpoint": echo_envelope.url, **ref},
                                  "UpstreamServerError"),
                "echo-detail": ({"endpoint": echo_detail.url, **ref}, None),
                "down": ({"endpoint": f"http://127.0.0.1:{free_port()}", **ref},
                         "ConnectionRefused"),
                "no-secret": ({"endpoint": good.base_url,
                               "apiKeySecretRef": {"name": "absent"}}, "SecretNotFound"),
            }
            for name, (spec, _) in specs.items():
                providers.create(name, spec)
            operator.start()
            for name, (_, reason) in specs.items():
                if reason is not None:
                    providers.wait_reason(name, reason, timeout=30)
                else:
                    wait_for(lambda n=name: providers.condition(n), timeout=30)

            # the relay: every provider, streamed and not, including the broken ones (a test
            # marks them Ready the way a flapping provider would be when the request arrives)
            for name in specs:
                _force_ready(providers, name)
            wait_for(lambda: len(httpx.get(f"{operator.url}/v1/models").json()["data"])
                     >= len(specs), timeout=15, what="all providers routable")
            for name in specs:
                for stream in (False, True):
                    resp = httpx.post(f"{operator.url}/v1/chat/completions", timeout=15,
                                      json={"model": f"{team}/{name}/m", "messages": MSG,
                                            "stream": stream})
                    answers.append(f"{name} {resp.status_code} {dict(resp.headers)} {resp.text}")
            statuses = {a.split()[0] + ("/s" if i % 2 else ""): a.split()[1]
                        for i, a in enumerate(answers)}

            # rotation under DEBUG logging
            good.set_api_keys({canary, rotated})
            providers.put_secret("key", {"apiKey": rotated})
            wait_for(lambda: httpx.post(f"{operator.url}/v1/chat/completions", timeout=10,
                                        json={"model": f"{team}/ready/m", "messages": MSG}
                                        ).status_code == 200
                     and good.requests[-1].api_key == rotated, timeout=15,
                     what="the rotated key in use")
            metrics = httpx.get(f"{operator.url}/metrics").text

            # the same relay code in this process, with its log records captured at DEBUG
            caplog.set_level(logging.DEBUG)
            relay = _in_process_relay(cluster, team, echo_envelope, good)
            try:
                for model in ("echo-m", "good-m"):
                    resp = httpx.post(f"{relay.url}/chat/completions", timeout=10,
                                      json={"model": model, "messages": MSG})
                    answers.append(resp.text)
            finally:
                relay.stop()
    finally:
        operator.stop()
        echo_envelope.close()
        echo_detail.close()

    kubectl = [str(cluster.plane.binaries.kubectl), f"--kubeconfig={cluster.plane.kubeconfig}"]
    events = subprocess.run([*kubectl, "get", "events", "-A", "-o", "json"], check=True,
                            capture_output=True, text=True).stdout
    objects = subprocess.run([*kubectl, "get", "chatproviders", "-A", "-o", "json"],
                             check=True, capture_output=True, text=True).stdout
    haystacks = {"operator+relay log (DEBUG)": operator.text(), "Events": events,
                 "ChatProvider objects": objects, "/metrics": metrics,
                 "relay answers": "\n".join(answers), "in-process log records": caplog.text}
    assert " DEBUG " in operator.text(), "the operator did not log at DEBUG"
    for where, text in haystacks.items():
        for secret in secrets:
            for form in forms(secret):
                assert form not in text, f"a form of the key leaked into {where}"
    figure("canary API key at DEBUG through 7 providers x (probe, chat, stream), rotation",
           f"0 occurrences (raw, base64, base64url, 'Bearer ' base64, inner substring) in "
           f"{sum(len(t) for t in haystacks.values()) // 1024} KiB of logs, Events, status, "
           f"metrics and answers; relay statuses {statuses}")

    # who read which Secret: the operator only in the provider's namespace, only by name
    reads = [e for e in cluster.plane.audit()
             if e["user"]["username"] == cluster.users["operator"]
             and dt.datetime.fromisoformat(e["requestReceivedTimestamp"]) >= started
             and e.get("objectRef", {}).get("resource") == "secrets"]
    assert reads, "the audit log shows no Secret read by the operator"
    touched = {(e["objectRef"].get("namespace"), e["objectRef"].get("name")
                or _selected_name(e["requestURI"])) for e in reads}
    # the operator watches every namespace (as the chart runs it): the providers earlier tests
    # left behind reference their own Secrets, which it may read too; never any other
    referenced = {(team, "key"), (team, "absent")} | {
        (p["metadata"]["namespace"], ref["name"])
        for p in k8s_client.CustomObjectsApi(cluster.api).list_cluster_custom_object(
            "ai.chatprovider.dev", "v1alpha1", "chatproviders")["items"]
        if (ref := p.get("spec", {}).get("apiKeySecretRef"))}
    assert team in {ns for ns, _ in touched}, touched
    assert other not in {ns for ns, _ in touched}, touched
    assert touched <= referenced, touched - referenced
    assert all(e["verb"] in ("get", "list", "watch") for e in reads)
    figure("Secrets read by the operator (API server audit log)",
           f"{len(reads)} requests, all in the provider's namespace, by name: "
           f"{sorted(touched)}; none in {other} (which holds a Secret of the same name)")


def _selected_name(uri: str) -> str | None:
    from urllib.parse import parse_qs, urlsplit

    selector = parse_qs(urlsplit(uri).query).get("fieldSelector", [""])[0]
    return selector.removeprefix("metadata.name=") if selector.startswith("metadata.name=") \
        else None


def _force_ready(providers: Providers, name: str) -> None:
    obj = providers.get(name)
    generation = obj["metadata"]["generation"]
    providers.api.patch_namespaced_custom_object_status(
        "ai.chatprovider.dev", "v1alpha1", providers.ns, "chatproviders", name,
        {"status": {"observedGeneration": generation, "models": [{"id": "m"}],
                    "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                    "message": "forced by the test",
                                    "observedGeneration": generation,
                                    "lastTransitionTime": "2025-01-01T00:00:00Z"}]}})


def _in_process_relay(cluster, namespace: str, echo: RawServer, good: DevServer) -> RelayThread:
    from chatprovider.relay import AuthMode, RelaySettings

    relay = RelayThread(RelaySettings(port=0, auth_mode=AuthMode.NONE),
                        cluster.kubeconfigs["relay"]).start()
    relay.add(provider_body(namespace, "echo", echo.url, ["echo-m"], key_secret="key"))
    relay.add(provider_body(namespace, "good", good.url, ["good-m"], key_secret="key"))
    return relay


def test_a_provider_cannot_name_a_secret_in_another_namespace(secured_cluster) -> None:
    kubectl = [str(secured_cluster.plane.binaries.kubectl),
               f"--kubeconfig={secured_cluster.plane.kubeconfig}"]
    attempts = {
        "apiKeySecretRef": {"apiKeySecretRef": {"name": "other-ns/key"}},
        "caBundle.secretKeyRef": {"tls": {"caBundle": {"secretKeyRef": {
            "name": "other-ns/ca", "key": "ca.crt"}}}},
        "caBundle.configMapKeyRef": {"tls": {"caBundle": {"configMapKeyRef": {
            "name": "../other-ns/ca", "key": "ca.crt"}}}},
        "apiKeySecretRef.namespace": {"apiKeySecretRef": {"name": "key",
                                                          "namespace": "other-ns"}},
    }
    for field, extra in attempts.items():
        body = {"apiVersion": "ai.chatprovider.dev/v1alpha1", "kind": "ChatProvider",
                "metadata": {"name": "x", "namespace": "default"},
                "spec": {"endpoint": "http://example.invalid/v1", **extra}}
        proc = subprocess.run([*kubectl, "create", "-f", "-"], input=json.dumps(body),
                              capture_output=True, text=True)
        assert proc.returncode != 0, field
        assert "Invalid" in proc.stderr or "unknown field" in proc.stderr, proc.stderr


@pytest.fixture(autouse=True)
def _quiet_kubernetes_client_logs():
    """The kubernetes client logs request bodies at DEBUG (the test's own Secret writes):
    that is the test's admin client, not the operator, so keep it out of caplog."""
    logger = logging.getLogger("kubernetes")
    level = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(level)
