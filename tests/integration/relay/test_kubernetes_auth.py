"""Kubernetes auth mode against the real API server: TokenReview, SubjectAccessReview (verb use),
per-caller /v1/models, and the provider's key (not the caller's token) sent upstream."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from kubernetes import client as k8s_client
from tests.conftest import RELAY_AUDIENCE
from tests.reliability.harness import wait_for

from chatprovider.relay import AuthMode

from .conftest import create_secret, provider_body

MSG = [{"role": "user", "content": "hello"}]
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


def grant_use(k8s, namespace: str, service_account: str, provider: str) -> None:
    rbac = k8s_client.RbacAuthorizationV1Api(k8s)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": f"use-{provider}"},
        "rules": [{"apiGroups": ["ai.chatprovider.dev"], "resources": ["chatproviders"],
                   "resourceNames": [provider], "verbs": ["use"]}],
    })
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": f"{service_account}-uses-{provider}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": f"use-{provider}"},
        "subjects": [{"kind": "ServiceAccount", "name": service_account,
                      "namespace": namespace}],
    })


@pytest.fixture()
def secured(relay_factory, make_upstream, k8s, namespace, mint_token):
    upstream = make_upstream("vllm", api_keys={"provider-key"})
    create_secret(k8s, namespace, "llm-key", "provider-key")
    relay = relay_factory(auth_mode=AuthMode.KUBERNETES)
    relay.add(provider_body(namespace, "vllm", upstream.url, upstream.models,
                            key_secret="llm-key"))
    relay.add(provider_body(namespace, "other", upstream.url, ["other-model"],
                            key_secret="llm-key"))
    grant_use(k8s, namespace, "app", "vllm")
    tokens = {"allowed": mint_token(namespace, "app", audience=RELAY_AUDIENCE),
              "denied": mint_token(namespace, "stranger", audience=RELAY_AUDIENCE)}
    return relay, upstream, namespace, tokens


def test_service_account_with_use_permission_chats(secured) -> None:
    relay, upstream, ns, tokens = secured
    client = relay.client(tokens["allowed"])
    assert [m.id for m in client.models.list()] == [f"{ns}/vllm/{m}" for m in upstream.models]
    answer = client.chat.completions.create(model=f"{ns}/vllm/{LLAMA}", messages=MSG)
    assert answer.choices[0].message.content
    stream = client.chat.completions.create(model=LLAMA, messages=MSG, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    seen = upstream.requests[-1]
    assert seen.api_key == "provider-key"
    assert tokens["allowed"] not in repr(dict(seen.headers))


def test_service_account_without_permission_is_403_and_sees_nothing(secured) -> None:
    relay, upstream, ns, tokens = secured
    client = relay.client(tokens["denied"])
    assert list(client.models.list()) == []
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model=f"{ns}/vllm/{LLAMA}", messages=MSG)
    assert info.value.code == "provider_forbidden"
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model=LLAMA, messages=MSG,
                                       extra_headers={"X-ChatProvider": f"{ns}/vllm"})
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model=LLAMA, messages=MSG)
    assert f"{ns}/vllm" not in unknown.value.message
    assert upstream.journal.total == 0


def test_permission_is_per_provider(secured) -> None:
    relay, _, ns, tokens = secured
    client = relay.client(tokens["allowed"])
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model=f"{ns}/other/other-model", messages=MSG)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="other-model", messages=MSG)


def test_invalid_or_missing_token_is_401(secured) -> None:
    relay, upstream, ns, _ = secured
    with pytest.raises(openai.AuthenticationError):
        relay.client("not-a-valid-token").models.list()
    with pytest.raises(openai.AuthenticationError):
        relay.client("not-a-valid-token").chat.completions.create(model=LLAMA, messages=MSG)
    resp = httpx.get(f"{relay.url}/models")
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert resp.json()["error"]["type"] == "authentication_error"
    resp = httpx.get(f"{relay.url}/models", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert resp.status_code == 401
    assert upstream.journal.total == 0


def test_reviews_are_cached(secured) -> None:
    relay, _, ns, tokens = secured
    calls: list[str] = []
    original = relay.kube.create

    async def counting(path, body):
        attributes = body.get("spec", {}).get("resourceAttributes", {})
        calls.append(f'{path.rsplit("/", 1)[-1]} {attributes.get("name", "")}'.strip())
        return await original(path, body)

    relay.kube.create = counting
    client = relay.client(tokens["allowed"])
    for _ in range(5):
        client.models.list()
        client.chat.completions.create(model=LLAMA, messages=MSG)
    assert calls.count("tokenreviews") == 1
    # one review per provider: an allowed answer is cached (10 s); a refusal for 2 s only, so
    # the other provider's review may repeat on a machine slow enough to take 2 s for the loop
    assert calls.count("subjectaccessreviews vllm") == 1, calls
    assert calls.count("subjectaccessreviews other") >= 1, calls


def test_a_token_for_another_audience_is_refused(secured, mint_token) -> None:
    """A token valid against the API server (or any other audience) is not accepted: callers
    never hand the relay a credential it could replay against the API server."""
    relay, upstream, ns, tokens = secured
    for audience in (None, "vault"):
        token = mint_token(ns, "app", audience=audience)
        with pytest.raises(openai.AuthenticationError) as info:
            relay.client(token).chat.completions.create(model=LLAMA, messages=MSG)
        assert info.value.code == "invalid_api_key"
        assert "not valid for this relay" in info.value.message
    assert relay.client(tokens["allowed"]).models.list().data  # the relay's audience works
    assert upstream.journal.total == 0


def test_a_deleted_service_account_is_refused_within_the_token_cache_ttl(
        relay_factory, make_upstream, k8s, namespace, mint_token) -> None:
    upstream = make_upstream("vllm")
    relay = relay_factory(auth_mode=AuthMode.KUBERNETES, token_cache_ttl=1.0)
    relay.add(provider_body(namespace, "vllm", upstream.url, upstream.models))
    grant_use(k8s, namespace, "app", "vllm")
    client = relay.client(mint_token(namespace, "app", audience=RELAY_AUDIENCE))
    assert client.models.list().data  # accepted, and the review is now cached
    k8s_client.CoreV1Api(k8s).delete_namespaced_service_account("app", namespace)

    def refused() -> bool:
        try:
            client.models.list()
        except openai.AuthenticationError:
            return True
        return False

    wait_for(refused, timeout=1.0 + 10.0, what="a 401 for the deleted ServiceAccount's token")


def test_a_stream_whose_caller_loses_use_is_cut_with_an_error_event(
        relay_factory, make_upstream, k8s, namespace, mint_token) -> None:
    upstream = make_upstream("vllm")
    upstream.behaviour.update(stream_frames=600, frame_delay=0.05)  # a 30 s answer
    relay = relay_factory(auth_mode=AuthMode.KUBERNETES, access_cache_ttl=1.0)
    relay.add(provider_body(namespace, "vllm", upstream.url, upstream.models))
    grant_use(k8s, namespace, "app", "vllm")
    token = mint_token(namespace, "app", audience=RELAY_AUDIENCE)
    events: list[str] = []
    body = {"model": LLAMA, "messages": MSG, "stream": True}
    with httpx.stream("POST", f"{relay.url}/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()
        for line in lines:  # the stream has started: revoke the binding
            if line.startswith("data: "):
                events.append(line)
                break
        k8s_client.RbacAuthorizationV1Api(k8s).delete_namespaced_role_binding(
            "app-uses-vllm", namespace)
        events.extend(line for line in lines if line.startswith("data: "))
    last = json.loads(events[-1].removeprefix("data: "))
    assert last["error"]["code"] == "access_revoked", events[-3:]
    assert "data: [DONE]" not in events
    assert len(events) < 600, "cut before the upstream finished"
    wait_for(lambda: upstream.journal.requests[-1].outcome == "cancelled",
             what="the upstream request cancelled")  # the upstream work stopped


def test_a_stream_ends_at_the_maximum_duration(relay_factory, make_upstream) -> None:
    upstream = make_upstream("vllm")
    upstream.behaviour.update(stream_frames=600, frame_delay=0.05)
    relay = relay_factory(max_stream_duration=1.0)
    relay.add(provider_body("demo", "vllm", upstream.url, upstream.models))
    body = {"model": LLAMA, "messages": MSG, "stream": True}
    with httpx.stream("POST", f"{relay.url}/chat/completions", json=body, timeout=30) as resp:
        events = [line for line in resp.iter_lines() if line.startswith("data: ")]
    last = json.loads(events[-1].removeprefix("data: "))
    assert last["error"]["code"] == "stream_timeout"
    assert "data: [DONE]" not in events and len(events) < 600
