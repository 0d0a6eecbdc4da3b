"""Passive health against the real API server: the operator with its embedded relay, dev servers
as upstreams, providers checked only every hour. What the relay sees of a provider takes it out
of routing at once, the operator re-checks it at once because the relay asked (the refresh
annotation), and it returns when a re-check passes; each step is an Event and a metric."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from tests.integration.controller.conftest import OperatorThread, Providers, wait_for
from tests.integration.operator_stack import OperatorStack

from chatprovider.domain.ejection import EjectionPolicy
from chatprovider.domain.routing import ProviderRef
from chatprovider.relay import BareModelPolicy, Relay, RelaySettings
from chatprovider.relay.app import RelayApp
from chatprovider.settings import AuthMode, OperatorSettings
from chatprovider_tools.devserver import DevServer

from .conftest import provider_body

MSG = [{"role": "user", "content": "hello"}]
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
REFRESH = "ai.chatprovider.dev/refresh"
#: The acceptance bounds (issue 17): out of routing within 2 s of the first 401, status
#: Unauthorized within 5 s. The waits below are bounded by them; the figures are printed.
OUT_OF_ROUTING_BOUND, UNAUTHORIZED_BOUND = 2.0, 5.0


@pytest.fixture()
def providers(k8s, namespace) -> Providers:
    return Providers(k8s, namespace)


@pytest.fixture()
def stack(kubeconfig, chatprovider_crd, namespace) -> Iterator[OperatorStack]:
    settings = RelaySettings(port=0, auth_mode=AuthMode.NONE,
                             bare_model_policy=BareModelPolicy.FAILOVER)
    with OperatorStack(kubeconfig, settings, namespaces=(namespace,)) as running:
        yield running


class SeparateRelay:
    """``chatprovider relay`` (its own watch, registry and Kubernetes client) in a thread, next
    to an operator without a relay: the signal crosses the API server."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.app = RelayApp(OperatorSettings(kubeconfig=str(kubeconfig), namespaces=(namespace,)),
                            RelaySettings(port=0, auth_mode=AuthMode.NONE))
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="relay-app", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await self.app.run(self._stop)
        asyncio.run(main())

    def start(self) -> SeparateRelay:
        self._thread.start()
        wait_for(lambda: self.relay is not None and self.relay.is_ready(), what="the relay")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the relay did not stop within 30 s"

    @property
    def relay(self) -> Relay | None:
        return self.app.relay

    @property
    def relay_url(self) -> str:
        assert self.relay is not None
        return self.relay.url


@pytest.fixture(params=["embedded", "separate"])
def any_stack(request, kubeconfig, chatprovider_crd, namespace
              ) -> Iterator[OperatorStack | SeparateRelay]:
    """The relay embedded in the operator, or run apart from it (the chart's two modes)."""
    if request.param == "embedded":
        yield request.getfixturevalue("stack")
        return
    operator = OperatorThread(OperatorSettings(kubeconfig=str(kubeconfig),
                                               namespaces=(namespace,), min_retry_seconds=1.0,
                                               relay=False)).start()
    relay = SeparateRelay(kubeconfig, namespace).start()
    try:
        yield relay
    finally:
        relay.stop()
        operator.stop()


def hourly(endpoint: str, **spec: Any) -> dict[str, Any]:
    """A provider checked once an hour: only a signal can make the operator look sooner."""
    return {"endpoint": endpoint, "discovery": {"interval": "1h"}, **spec}


def client(stack: OperatorStack | SeparateRelay) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.relay_url, api_key="unused", max_retries=0, timeout=30)


def out_of_routing(stack: OperatorStack | SeparateRelay) -> set[ProviderRef]:
    assert stack.relay is not None
    return set(stack.relay.ejections.out)


def metric(stack: OperatorStack | SeparateRelay, name: str, **labels: str) -> float:
    assert stack.relay is not None
    value = stack.relay.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def relay_events(providers: Providers, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in providers.events(name) if e["reason"] == reason]


def test_a_revoked_key_is_out_of_routing_at_once_and_back_after_a_passing_recheck(
        any_stack, providers, namespace) -> None:
    stack = any_stack
    with DevServer("vllm", api_keys={"key-one"}) as upstream:
        providers.put_secret("llm-key", {"apiKey": "key-one"})
        providers.create("vllm", hourly(upstream.url, apiKeySecretRef={
            "name": "llm-key", "key": "apiKey"}))
        providers.wait_reason("vllm", "Ready")
        qualified = f"{namespace}/vllm/{LLAMA}"
        chat = client(stack)
        wait_for(lambda: _answers(chat, qualified), what="the relay routes to the provider")
        key = ProviderRef(namespace, "vllm")

        upstream.set_api_keys({"key-two"})  # revoked at the upstream; the Secret is unchanged
        with pytest.raises(openai.APIStatusError) as first:
            chat.chat.completions.create(model=qualified, messages=MSG)
        assert first.value.status_code == 502
        assert first.value.code == "upstream_auth_rejected"
        first_401 = max(r.time for r in upstream.requests
                        if r.path == "/v1/chat/completions")
        wait_for(lambda: key in out_of_routing(stack), timeout=OUT_OF_ROUTING_BOUND,
                 interval=0.01, what="the provider out of routing")
        out_after = time.time() - first_401
        upstream_calls = upstream.journal.total
        with pytest.raises(openai.APIStatusError) as refused:
            chat.chat.completions.create(model=qualified, messages=MSG)
        assert refused.value.status_code == 503
        assert refused.value.code == "provider_unavailable"
        assert "out of routing" in refused.value.message
        assert refused.value.response.headers["retry-after"]
        providers.wait_reason("vllm", "Unauthorized",
                              timeout=max(0.1, UNAUTHORIZED_BOUND - (time.time() - first_401)))
        unauthorized_after = time.time() - first_401
        # the relay's request reached no upstream; the operator's re-check did (GET /v1/models)
        relayed = [r for r in upstream.requests[upstream_calls:]
                   if r.path == "/v1/chat/completions"]
        assert relayed == []
        annotation = providers.get("vllm")["metadata"]["annotations"][REFRESH]
        assert annotation.endswith("relay ejected: unauthorized")
        ejected = wait_for(lambda: relay_events(providers, "vllm", "Ejected"),
                           what="the Ejected Event")
        assert ejected[0]["type"] == "Warning" and "401" in ejected[0]["message"]
        assert not any("key-" in e["message"] for e in providers.events("vllm"))
        assert metric(stack, "chatprovider_relay_ejections_total", namespace=namespace,
                      provider="vllm", reason="unauthorized") == 1
        assert metric(stack, "chatprovider_relay_ejected_providers") == 1
        print(f"\nrevoked key ({type(stack).__name__}): out of routing"
              f" {out_after * 1000:.0f} ms after the first 401, status Unauthorized after"
              f" {unauthorized_after * 1000:.0f} ms")

        upstream.set_api_keys({"key-one"})  # the key works again; the user asks for a check
        providers.patch("vllm", {"metadata": {"annotations": {REFRESH: "key restored"}}})
        providers.wait_reason("vllm", "Ready")
        wait_for(lambda: key not in out_of_routing(stack), what="the provider back in routing")
        assert _answers(chat, qualified)
        returned = wait_for(lambda: relay_events(providers, "vllm", "Returned"),
                            what="the Returned Event")
        assert "rechecked" in returned[0]["message"]
        assert metric(stack, "chatprovider_relay_returns_total", namespace=namespace,
                      provider="vllm", reason="rechecked") == 1
        assert metric(stack, "chatprovider_relay_ejected_providers") == 0


def test_a_stopped_server_is_ejected_and_the_other_provider_takes_the_traffic(
        stack, providers, namespace) -> None:
    second = DevServer("vllm").start()
    first = DevServer("vllm").start()
    port = first.port
    try:
        providers.create("a", hourly(first.url))
        providers.create("b", hourly(second.url))
        providers.wait_reason("a", "Ready")
        providers.wait_reason("b", "Ready")
        chat = client(stack)
        wait_for(lambda: _served_by(chat, LLAMA) == f"{namespace}/a",
                 what="the bare model routed to a, the first in order")

        first.stop()
        assert _served_by(chat, LLAMA) == f"{namespace}/b"  # refused before sending: failover
        assert ProviderRef(namespace, "a") in out_of_routing(stack)
        for _ in range(5):  # a is skipped now: no more attempts, no more refusals
            assert _served_by(chat, LLAMA) == f"{namespace}/b"
        assert metric(stack, "chatprovider_relay_upstream_failures_total", namespace=namespace,
                      provider="a", kind="connection_refused") == 1
        assert metric(stack, "chatprovider_relay_ejections_total", namespace=namespace,
                      provider="a", reason="connection_refused") == 1
        providers.wait_reason("a", "ConnectionRefused", timeout=UNAUTHORIZED_BOUND)
        assert "refused the connection" in relay_events(providers, "a", "Ejected")[0]["message"]

        first = DevServer("vllm", port=port).start()  # back; the operator retries by itself
        providers.wait_reason("a", "Ready")
        wait_for(lambda: ProviderRef(namespace, "a") not in out_of_routing(stack),
                 what="a back in routing")
        assert _served_by(chat, LLAMA) == f"{namespace}/a"
        assert relay_events(providers, "a", "Returned")
        assert not relay_events(providers, "b", "Ejected")
    finally:
        first.stop()
        second.stop()


def test_consecutive_server_errors_eject_and_a_passing_recheck_returns_at_once(
        stack, providers, namespace) -> None:
    """Five 503s in a row eject; the operator's re-check (GET /v1/models) finds nothing wrong,
    writes lastCheck anyway because a refresh was asked for, and the provider returns without
    waiting for its probation."""
    with DevServer("vllm") as upstream:
        providers.create("flaky", hourly(upstream.url))
        providers.wait_reason("flaky", "Ready")
        qualified = f"{namespace}/flaky/{LLAMA}"
        chat = client(stack)
        wait_for(lambda: _answers(chat, qualified), what="the relay routes to the provider")
        before = providers.get("flaky")["status"]["lastCheck"]
        upstream.behaviour.update(status=503, fail_times=5,
                                  fault_paths=frozenset({"/v1/chat/completions"}))
        key = ProviderRef(namespace, "flaky")
        for n in range(5):
            assert key not in out_of_routing(stack), f"ejected after {n} errors"
            with pytest.raises(openai.InternalServerError):
                chat.chat.completions.create(model=qualified, messages=MSG)
        assert metric(stack, "chatprovider_relay_ejections_total", namespace=namespace,
                      provider="flaky", reason="consecutive_failures") == 1
        wait_for(lambda: key not in out_of_routing(stack), what="back after the re-check")
        assert providers.get("flaky")["status"]["lastCheck"] != before
        assert _answers(chat, qualified)
        returned = wait_for(lambda: relay_events(providers, "flaky", "Returned"),
                            what="the Returned Event")
        assert "rechecked" in returned[0]["message"]


def _answers(chat: openai.OpenAI, model: str) -> bool:
    try:
        return bool(chat.chat.completions.create(model=model, messages=MSG).choices)
    except openai.APIError:
        return False


def _served_by(chat: openai.OpenAI, model: str) -> str | None:
    try:
        raw = chat.chat.completions.with_raw_response.create(model=model, messages=MSG)
    except openai.APIError:
        return None
    return raw.headers["X-ChatProvider"]


MANIFESTS = Path(__file__).resolve().parents[3] / "manifests" / "admission-policy.yaml"
RELAY_ACCOUNT = "system:serviceaccount:chatprovider-system:chatprovider-operator-relay"


@pytest.fixture()
def relay_patch_policy(kubectl) -> Iterator[str]:
    """The chart's policy on the relay's patches (as manifests/ renders it, for the default
    release), under a name of this test's own."""
    name = f"relay-patches-{uuid.uuid4().hex[:8]}"
    docs = [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d and d["metadata"][
        "name"] == "chatprovider-operator-relay-patches"]
    assert {d["kind"] for d in docs} == {"ValidatingAdmissionPolicy",
                                         "ValidatingAdmissionPolicyBinding"}
    for doc in docs:
        doc["metadata"] = {"name": name}
        if doc["kind"] == "ValidatingAdmissionPolicyBinding":
            doc["spec"]["policyName"] = name
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    yield name
    kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name,
            check=False)


def test_the_relay_account_may_change_only_the_refresh_annotation(
        relay_patch_policy, chatprovider_crd, kubectl, providers, namespace) -> None:
    providers.create("p", {"endpoint": "http://127.0.0.1:9/v1"},
                     annotations={"team": "a", REFRESH: "0"})
    kubectl("create", "role", "relay", "-n", namespace, "--verb=get,patch",
            "--resource=chatproviders.ai.chatprovider.dev")
    kubectl("create", "rolebinding", "relay", "-n", namespace, "--role=relay",
            "--serviceaccount=chatprovider-system:chatprovider-operator-relay")

    def patch(body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return kubectl("patch", "chatprovider", "p", "-n", namespace, "--type=merge",
                       "-p", json.dumps(body), f"--as={RELAY_ACCOUNT}", check=False)

    def refused_probe() -> subprocess.CompletedProcess[str] | None:
        # a new value each time: a change let through before the policy is in force would
        # make the same patch again a no-op
        answer = patch({"metadata": {"labels": {"probe": uuid.uuid4().hex[:8]}}})
        return answer if answer.returncode != 0 else None

    refused = wait_for(refused_probe, interval=0.2, what="the policy in force")
    assert "may only change the annotation ai.chatprovider.dev/refresh" in refused.stderr
    for body in ({"spec": {"endpoint": "http://attacker.example/v1"}},
                 {"metadata": {"labels": {"x": "y"}}},
                 {"metadata": {"annotations": {"team": "b"}}},
                 {"metadata": {"annotations": {"team": None}}},
                 {"metadata": {"annotations": {"new": "1"}}},
                 {"metadata": {"finalizers": ["x/y"]}}):
        answer = patch(body)
        assert answer.returncode != 0 and "may only change the annotation" in answer.stderr, \
            (body, answer.stderr)
    allowed = patch({"metadata": {"annotations": {REFRESH: "relay ejected: unauthorized"}}})
    assert allowed.returncode == 0, allowed.stderr
    stored = providers.get("p")
    assert "x" not in (stored["metadata"].get("labels") or {})
    assert stored["metadata"]["annotations"] == {"team": "a",
                                                 REFRESH: "relay ejected: unauthorized"}
    assert stored["spec"]["endpoint"] == "http://127.0.0.1:9/v1"
    # anyone else (here: the admin) is not bound by it
    kubectl("patch", "chatprovider", "p", "-n", namespace, "--type=merge", "-p",
            json.dumps({"metadata": {"labels": {"x": "y"}}}))


def test_without_an_operator_the_probation_brings_a_provider_back(relay_factory) -> None:
    """A relay with no Kubernetes client (nobody to ask for a re-check, no Events) still ejects;
    the provider returns when its probation ends. The 503 is in each route's own envelope."""
    relay = relay_factory(ejection_policy=EjectionPolicy(probation=1.0))
    server = DevServer("vllm").start()
    port = server.port
    server.stop()
    relay.add(provider_body("team-a", "vllm", f"http://127.0.0.1:{port}/v1", [LLAMA]))
    model = f"team-a/vllm/{LLAMA}"
    chat = relay.client()
    with pytest.raises(openai.APIStatusError) as refused:
        chat.chat.completions.create(model=model, messages=MSG)
    assert refused.value.code == "connection_refused"
    with pytest.raises(openai.APIStatusError) as out:
        chat.chat.completions.create(model=model, messages=MSG)
    assert out.value.status_code == 503 and out.value.code == "provider_unavailable"
    messages = httpx.post(f"{relay.base}/v1/messages", json={
        "model": model, "max_tokens": 8, "messages": MSG}, timeout=10)
    assert messages.status_code == 503
    assert messages.json()["error"]["type"] == "overloaded_error"
    assert "out of routing" in messages.json()["error"]["message"]
    with DevServer("vllm", port=port):
        wait_for(lambda: relay.metric("chatprovider_relay_returns_total", namespace="team-a",
                                      provider="vllm", reason="probation_ended") == 1,
                 what="the end of the probation")
        assert chat.chat.completions.create(model=model, messages=MSG).choices
    assert relay.metric("chatprovider_relay_ejected_providers") == 0
