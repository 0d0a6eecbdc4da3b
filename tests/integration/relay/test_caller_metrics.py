"""Per-caller metrics of a running relay (Kubernetes auth against the real API server, a
DevServer upstream), their bound, and the Grafana dashboard against a real scrape of
/metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import openai
import pytest
from kubernetes import client as k8s_client
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import RELAY_AUDIENCE

from chatprovider.relay import AuthMode

from .conftest import create_secret, provider_body
from .test_kubernetes_auth import grant_use

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "dashboards" / "chatprovider-relay.json"
MSG = [{"role": "user", "content": "hello"}]
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
            "histogram": ("_bucket", "_sum", "_count", "_created")}


@pytest.fixture()
def two_callers(relay_factory, make_upstream, k8s, namespace, mint_token):
    """A relay that names one caller at most; two ServiceAccounts that may use vllm."""
    upstream = make_upstream("vllm", api_keys={"provider-key"})
    create_secret(k8s, namespace, "llm-key", "provider-key")
    relay = relay_factory(auth_mode=AuthMode.KUBERNETES, caller_limit=1)
    relay.add(provider_body(namespace, "vllm", upstream.url, upstream.models,
                            key_secret="llm-key"))
    grant_use(k8s, namespace, "app", "vllm")
    k8s_client.RbacAuthorizationV1Api(k8s).create_namespaced_role_binding(namespace, {
        "metadata": {"name": "batch-uses-vllm"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "use-vllm"},
        "subjects": [{"kind": "ServiceAccount", "name": "batch", "namespace": namespace}]})
    tokens = {name: mint_token(namespace, name, audience=RELAY_AUDIENCE)
              for name in ("app", "batch", "stranger")}
    return relay, namespace, tokens


def _scrape(relay) -> dict[str, tuple[str, list]]:
    """family name -> (type, samples) of the relay's /metrics."""
    text = httpx.get(f"{relay.base}/metrics").text
    return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(text)}


def test_requests_and_tokens_are_counted_by_caller_up_to_the_bound(two_callers) -> None:
    relay, ns, tokens = two_callers
    for name, count in (("app", 2), ("batch", 1)):
        client = relay.client(tokens[name])
        for _ in range(count):
            answer = client.chat.completions.create(model=LLAMA, messages=MSG)
            assert answer.usage is not None and answer.usage.prompt_tokens > 0
    with pytest.raises(openai.NotFoundError):  # it may use no provider: it sees none
        relay.client(tokens["stranger"]).chat.completions.create(model=LLAMA, messages=MSG)

    families = _scrape(relay)
    _, requests = families["chatprovider_relay_caller_requests"]
    by_caller = {(s.labels["caller_namespace"], s.labels["caller"]): s.value
                 for s in requests if s.name.endswith("_total")
                 and s.labels["provider"] == "vllm" and s.labels["model"] == LLAMA}
    # the first caller is named; the limit (1) reached, the others are "other"
    assert by_caller[(ns, "app")] == 2
    assert by_caller[("", "other")] == 1  # batch (the stranger's request was never routed)
    assert all(caller in {(ns, "app"), ("", "other")} for caller in by_caller)
    _, caller_tokens = families["chatprovider_relay_caller_tokens"]
    prompt = {s.labels["caller"]: s.value for s in caller_tokens
              if s.name.endswith("_total") and s.labels["direction"] == "prompt"}
    _, all_tokens = families["chatprovider_relay_tokens"]
    total_prompt = sum(s.value for s in all_tokens
                       if s.name.endswith("_total") and s.labels["direction"] == "prompt")
    assert prompt["app"] > 0 and prompt["app"] + prompt["other"] == total_prompt
    _, errors = families["chatprovider_relay_error_answers"]
    refused = [(s.labels["status"], s.labels["reason"], s.value) for s in errors
               if s.name.endswith("_total")]
    assert len(refused) == 1 and refused[0][0] == "404" and refused[0][2] == 1
    text = httpx.get(f"{relay.base}/metrics").text
    for token in tokens.values():
        assert token not in text


def test_the_dashboard_queries_only_metrics_a_running_relay_exports(relay, upstream) -> None:
    relay.add(provider_body("team-a", "vllm", upstream.url, upstream.models))
    client = relay.client()
    client.chat.completions.create(model=LLAMA, messages=MSG)
    for _ in client.chat.completions.create(model=LLAMA, messages=MSG, stream=True):
        pass
    httpx.post(f"{relay.url}/chat/completions", json={"model": "nope", "messages": MSG})
    exported: dict[str, set[str]] = {}
    for name, (kind, samples) in _scrape(relay).items():
        labels = set().union(*(set(s.labels) for s in samples)) if samples else set()
        for suffix in SUFFIXES.get(kind, ("",)):
            exported[name + suffix] = labels
    board = json.loads(DASHBOARD.read_text())
    text = json.dumps(board)
    exprs = re.findall(r'"(?:expr|definition)": "((?:[^"\\]|\\.)*)"', text)
    assert len(exprs) >= 20
    for expr in exprs:
        for name in re.findall(r"\b(chatprovider_[a-zA-Z0-9_:]*)", expr):
            assert name in exported, f"{name} is not on the relay's /metrics ({expr})"
    # the series the panels plot are there, with their labels, after real traffic
    for name, label in (("chatprovider_relay_caller_requests_total", "caller"),
                        ("chatprovider_relay_caller_tokens_total", "direction"),
                        ("chatprovider_relay_error_answers_total", "reason"),
                        ("chatprovider_relay_time_to_first_token_seconds_bucket", "le")):
        assert label in exported[name], name
