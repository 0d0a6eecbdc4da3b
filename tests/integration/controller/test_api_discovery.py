"""Which APIs a provider's server answers, as the operator finds them and the relay uses them;
and the model lists of server types whose servers may lack ``GET /v1/models``.

The operator probes each route but chat completions with a request that names a listed model and
carries no input: a server refuses it (400, 422, 500) on a route it has, and answers 404, 405 or
501 on one it lacks. Real servers: llama.cpp's own ``llama-server`` (every route but embeddings,
which need ``--embeddings``) and llama-cpp-python's FastAPI server (no Responses, no Messages).
The relay then answers a route a provider lacks with a 404 in that API's own envelope, read by
the official SDKs, instead of relaying whatever the server says.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest
from tests.integration.operator_stack import OperatorStack

from chatprovider.settings import AuthMode, RelaySettings
from chatprovider_tools.devserver import DevServer
from chatprovider_tools.devserver.behaviour import Behaviour

ALL_BUT_EMBEDDINGS = ["chat/completions", "completions", "messages", "messages/count_tokens",
                      "responses"]


@pytest.fixture()
def stack(kubeconfig, chatprovider_crd, namespace) -> Iterator[OperatorStack]:
    with OperatorStack(kubeconfig, RelaySettings(port=0, auth_mode=AuthMode.NONE),
                       namespaces=(namespace,)) as running:
        yield running


@pytest.mark.realupstream
def test_real_servers_apis_are_recorded_and_a_missing_one_is_a_404_the_sdks_read(
        stack, providers, llama_server, llama_cpp_python_server) -> None:
    providers.put_secret("llama-server", {"apiKey": llama_server.api_key})
    providers.put_secret("llama-cpp-python", {"apiKey": llama_cpp_python_server.api_key})
    providers.create("llama-server", {"endpoint": llama_server.base_url,
                                      "serverType": "llamacpp",
                                      "apiKeySecretRef": {"name": "llama-server"}})
    providers.create("llama-cpp-python", {"endpoint": llama_cpp_python_server.base_url,
                                          "apiKeySecretRef": {"name": "llama-cpp-python"}})
    providers.wait_reason("llama-server", "Ready", timeout=60)
    providers.wait_reason("llama-cpp-python", "Ready", timeout=60)

    assert sorted(providers.get("llama-server")["status"]["apis"]) == ALL_BUT_EMBEDDINGS
    python_apis = providers.get("llama-cpp-python")["status"]["apis"]
    assert {"chat/completions", "completions"} <= set(python_apis)
    assert not {"responses", "messages", "messages/count_tokens"} & set(python_apis)

    ns = providers.ns
    served = f"{ns}/llama-server/{llama_server.models[0]}"
    lacking = f"{ns}/llama-cpp-python/{llama_cpp_python_server.models[0]}"
    claude = anthropic.Anthropic(base_url=stack.base, api_key="unused", max_retries=0,
                                 timeout=120,
                                 http_client=anthropic.DefaultHttpxClient(trust_env=False))
    oai = openai.OpenAI(base_url=stack.relay_url, api_key="unused", max_retries=0, timeout=120,
                        http_client=openai.DefaultHttpxClient(trust_env=False))
    with claude, oai:
        hello = [{"role": "user", "content": "Say hello."}]
        answer = claude.messages.create(model=served, max_tokens=2, messages=hello)
        assert answer.type == "message"  # relayed to llama-server, which has the route

        with pytest.raises(anthropic.NotFoundError) as refused:
            claude.messages.create(model=lacking, max_tokens=2, messages=hello)
        error = refused.value.body["error"]  # type: ignore[index]
        assert error["type"] == "not_found_error"
        assert f"provider {ns}/llama-cpp-python does not offer /v1/messages" in error["message"]

        with pytest.raises(openai.NotFoundError) as missing:
            oai.responses.create(model=lacking, input="Say hello.", max_output_tokens=16)
        assert missing.value.code == "api_not_offered"
        assert "chat/completions" in missing.value.message  # what it does offer


def test_ollama_and_tgi_without_v1_models_are_listed_through_their_own_routes(
        stack, providers) -> None:
    gone = Behaviour(models_status=404)  # as a server without the OpenAI model list
    with DevServer("ollama", behaviour=gone) as ollama, \
            DevServer("tgi", behaviour=Behaviour(models_status=404),
                      models=("HuggingFaceTB/SmolLM2-135M-Instruct",)) as tgi, \
            DevServer("generic", behaviour=Behaviour(models_status=404)) as generic:
        providers.create("ollama", {"endpoint": ollama.base_url, "serverType": "ollama"})
        providers.create("tgi", {"endpoint": tgi.base_url, "serverType": "tgi"})
        providers.create("generic", {"endpoint": generic.base_url})
        providers.wait_reason("ollama", "Ready", timeout=30)
        providers.wait_reason("tgi", "Ready", timeout=30)
        providers.wait_reason("generic", "ModelsRouteNotOffered", timeout=30)

        ollama_status = providers.get("ollama")["status"]
        assert [m["id"] for m in ollama_status["models"]] == ["llama3:8b", "qwen2.5:0.5b"]
        assert providers.condition("ollama", "ModelsDiscovered")["message"] == \
            "2 models offered (2 discovered through GET /api/tags)"
        assert [m["id"] for m in providers.get("tgi")["status"]["models"]] == \
            ["HuggingFaceTB/SmolLM2-135M-Instruct"]
        assert "through GET /info" in providers.condition("tgi", "ModelsDiscovered")["message"]

        with openai.OpenAI(base_url=stack.relay_url, api_key="unused", max_retries=0,
                           http_client=openai.DefaultHttpxClient(trust_env=False)) as oai:
            answer = oai.chat.completions.create(model=f"{providers.ns}/ollama/llama3:8b",
                                                 messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=3)
        assert answer.choices[0].message.content
