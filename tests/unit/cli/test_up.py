"""What ``chatprovider up`` applies: a valid ChatProvider registered as the seed describes (the
key in a Secret), and the ServiceAccounts and binding of its Kubernetes-auth mode."""

from __future__ import annotations

import json

import yaml

from chatprovider.api.v1alpha1 import ChatProvider
from chatprovider.settings import DEFAULT_TOKEN_AUDIENCE
from chatprovider_tools.demo_cluster import (
    APP_ACCOUNT,
    NAMESPACE,
    STRANGER_ACCOUNT,
    USER_ROLE,
    provider_manifest,
    rbac_manifest,
    token_command,
    user_roles,
)


def test_the_demo_manifest_without_a_key() -> None:
    docs = provider_manifest("http://127.0.0.1:11434/v1/chat/completions", None, "ollama")
    assert [d["kind"] for d in docs] == ["Namespace", "ChatProvider"]
    provider = ChatProvider.model_validate(docs[-1])
    assert provider.spec.api_key_secret_ref is None
    assert provider.metadata == {"name": "demo", "namespace": NAMESPACE}
    assert provider.spec.server_type == "ollama"


def test_the_demo_manifest_with_a_key_references_a_secret() -> None:
    docs = provider_manifest("http://127.0.0.1:8000/v1/chat/completions", "k-123", "llamacpp")
    assert [d["kind"] for d in docs] == ["Namespace", "Secret", "ChatProvider"]
    secret, provider = docs[1], ChatProvider.model_validate(docs[2])
    assert provider.spec.endpoint == "http://127.0.0.1:8000/v1/chat/completions"
    assert provider.spec.discovery.enabled
    assert provider.spec.api_key_secret_ref is not None
    assert provider.spec.api_key_secret_ref.name == secret["metadata"]["name"]
    assert secret["stringData"][provider.spec.api_key_secret_ref.key] == "k-123"  # type: ignore[index]
    assert "k-123" not in json.dumps(docs[2])


def test_only_the_app_account_is_bound_to_the_charts_user_role() -> None:
    docs = rbac_manifest()
    accounts = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"]  # type: ignore[index]
    assert accounts == [APP_ACCOUNT, STRANGER_ACCOUNT]
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": USER_ROLE}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": APP_ACCOUNT,
                                    "namespace": NAMESPACE}]
    roles = {d["metadata"]["name"]: d for d in yaml.safe_load_all(user_roles()) if d}
    assert roles[USER_ROLE]["rules"] == [{"apiGroups": ["ai.chatprovider.dev"],
                                          "resources": ["chatproviders"], "verbs": ["use"]},
                                         {"apiGroups": ["ai.chatprovider.dev"],
                                          "resources": ["chatmodels"], "verbs": ["use"]}]


def test_the_printed_token_command_is_for_the_relays_audience() -> None:
    assert token_command() == (f"kubectl create token {APP_ACCOUNT} -n {NAMESPACE} "
                               f"--audience {DEFAULT_TOKEN_AUDIENCE} --duration 1h")
