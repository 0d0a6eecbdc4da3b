"""The operator against real third-party OpenAI-compatible servers installed from PyPI:
llama-cpp-python's server (its FastAPI server over llama.cpp, Gemma 3 270M) and LiteLLM's
proxy (mock models)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.realupstream


def test_llama_cpp_server_discovery_verification_and_unauthorized(operator, providers,
                                                                   llama_cpp_python_server):
    providers.put_secret("llama", {"apiKey": llama_cpp_python_server.api_key})
    providers.put_secret("wrong", {"apiKey": "not-the-key"})
    model = llama_cpp_python_server.models[0]
    providers.create("llama", {
        "endpoint": f"{llama_cpp_python_server.base_url}/v1/chat/completions",
        "serverType": "llamacpp",
        "apiKeySecretRef": {"name": "llama"},
        "verification": {"enabled": True, "model": model, "maxTokens": 1},
    })
    providers.create("llama-bad-key", {"endpoint": llama_cpp_python_server.base_url,
                                       "apiKeySecretRef": {"name": "wrong"}})
    providers.wait_reason("llama", "Ready", timeout=60)
    status = providers.get("llama")["status"]
    assert [m["id"] for m in status["models"]] == [model]
    assert providers.condition("llama", "Verified")["status"] == "True"
    providers.wait_reason("llama-bad-key", "Unauthorized", timeout=30)


def test_litellm_proxy_discovery_verification_and_unauthorized(operator, providers,
                                                                litellm_proxy):
    providers.put_secret("master", {"apiKey": litellm_proxy.api_key})
    providers.create("litellm", {
        "endpoint": litellm_proxy.base_url, "serverType": "litellm",
        "apiKeySecretRef": {"name": "master"},
        "verification": {"enabled": True, "model": litellm_proxy.mock_models[0]},
    })
    providers.create("litellm-no-key", {"endpoint": litellm_proxy.base_url})
    providers.wait_reason("litellm", "Ready", timeout=60)
    ids = {m["id"] for m in providers.get("litellm")["status"]["models"]}
    assert set(litellm_proxy.mock_models) <= ids
    assert providers.condition("litellm", "Verified")["status"] == "True"
    # LiteLLM answers 401 only when the key is missing (a wrong key gives 400 without a DB)
    providers.wait_reason("litellm-no-key", "Unauthorized", timeout=30)
