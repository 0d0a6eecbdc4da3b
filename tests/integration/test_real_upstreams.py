"""Real third-party OpenAI-compatible servers answer the routes the product relies on.

llama-cpp-python's server runs a real (tiny, base) model: assert shapes, never content. LiteLLM's
proxy answers from mock models, and relays one model to a DevServer (a real two-hop chain).
"""

from __future__ import annotations

import json

import httpx
import pytest

pytestmark = pytest.mark.realupstream

CHAT = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4}


@pytest.fixture
def client():
    with httpx.Client(timeout=60.0, trust_env=False) as c:
        yield c


def sse_chunks(answer: httpx.Response) -> tuple[list[dict], str]:
    """The JSON chunks of an SSE answer and its last event (expected ``[DONE]``)."""
    events = [line[len("data: "):] for line in answer.text.split("\n")
              if line.startswith("data: ")]
    return [json.loads(e) for e in events[:-1]], events[-1]


def assert_chat_completion(body: dict, model: str) -> None:
    assert body["object"] == "chat.completion"
    assert body["model"] == model
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def assert_chat_stream(answer: httpx.Response, model: str) -> str:
    """Check the chunk shapes; return the streamed text."""
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    chunks, last = sse_chunks(answer)
    assert last == "[DONE]"
    assert chunks and {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert {c["model"] for c in chunks} == {model}
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[0]["choices"][0]["delta"]["role"] == "assistant"
    # LiteLLM's usage chunk carries choices=[{"index": 0, "delta": {}}] without finish_reason,
    # so look for the last chunk that names one.
    reasons = [c["choices"][0].get("finish_reason") for c in with_choices]
    assert [r for r in reasons if r][-1] in {"stop", "length"}
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in with_choices)


# ---- llama-cpp-python's server ----------------------------------------------------------------
def test_llama_lists_its_model(llama_cpp_python_server, client):
    body = client.get(f"{llama_cpp_python_server.url}/models",
                      headers=llama_cpp_python_server.headers).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["gemma-3-270m"]
    assert body["data"][0]["object"] == "model"


def test_llama_chat_completion(llama_cpp_python_server, client):
    answer = client.post(f"{llama_cpp_python_server.url}/chat/completions",
                         headers=llama_cpp_python_server.headers,
                         json={"model": "gemma-3-270m", **CHAT})
    assert answer.status_code == 200
    body = answer.json()
    assert_chat_completion(body, "gemma-3-270m")
    assert 1 <= body["usage"]["completion_tokens"] <= 4


def test_llama_chat_stream(llama_cpp_python_server, client):
    answer = client.post(f"{llama_cpp_python_server.url}/chat/completions",
                         headers=llama_cpp_python_server.headers,
                         json={"model": "gemma-3-270m", "stream": True, **CHAT})
    assert_chat_stream(answer, "gemma-3-270m")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}],
                         ids=["missing", "wrong"])
def test_llama_unauthorized_is_401_with_detail_not_the_openai_envelope(
        llama_cpp_python_server, client, headers):
    for answer in (client.get(f"{llama_cpp_python_server.url}/models", headers=headers),
                   client.post(f"{llama_cpp_python_server.url}/chat/completions", headers=headers,
                               json={"model": "gemma-3-270m", **CHAT})):
        assert answer.status_code == 401
        assert answer.json() == {"detail": "Invalid API key"}


# ---- LiteLLM's proxy ---------------------------------------------------------------------------
def test_litellm_lists_its_models(litellm_proxy, client):
    body = client.get(f"{litellm_proxy.url}/models", headers=litellm_proxy.headers).json()
    assert body["object"] == "list"
    assert sorted(m["id"] for m in body["data"]) == sorted(litellm_proxy.models)


def test_litellm_mock_chat_and_stream(litellm_proxy, client):
    model = litellm_proxy.mock_models[0]
    answer = client.post(f"{litellm_proxy.url}/chat/completions",
                         headers=litellm_proxy.headers, json={"model": model, **CHAT})
    assert answer.status_code == 200
    body = answer.json()
    assert_chat_completion(body, model)
    assert body["choices"][0]["message"]["content"] == litellm_proxy.mock_reply
    streamed = client.post(f"{litellm_proxy.url}/chat/completions",
                           headers=litellm_proxy.headers,
                           json={"model": model, "stream": True, **CHAT})
    assert assert_chat_stream(streamed, model) == litellm_proxy.mock_reply


def test_litellm_two_hop_chain_reaches_the_devserver(litellm_proxy, client):
    chain = litellm_proxy.chain
    chain.clear_requests()
    model = litellm_proxy.chain_model
    answer = client.post(f"{litellm_proxy.url}/chat/completions",
                         headers=litellm_proxy.headers, json={"model": model, **CHAT})
    assert answer.status_code == 200
    body = answer.json()
    assert_chat_completion(body, model)
    assert body["choices"][0]["message"]["content"].startswith("Hello from devserver-chat")
    streamed = client.post(
        f"{litellm_proxy.url}/chat/completions", headers=litellm_proxy.headers,
        json={"model": model, "stream": True, "stream_options": {"include_usage": True}, **CHAT})
    assert assert_chat_stream(streamed, model).startswith("Hello from devserver-chat")
    hops = [r for r in chain.requests if r.path == "/v1/chat/completions"]
    assert len(hops) == 2
    # the second hop carries LiteLLM's key for the DevServer, never the client's master key
    assert {r.api_key for r in hops} == set(chain.api_keys)
    assert hops[1].body["stream"] is True


def test_litellm_per_request_fault_injection(litellm_proxy, client):
    answer = client.post(
        f"{litellm_proxy.url}/chat/completions", headers=litellm_proxy.headers,
        json={"model": litellm_proxy.mock_models[0], "mock_response": "litellm.RateLimitError",
              **CHAT})
    assert answer.status_code == 429
    assert "error" in answer.json()


def test_litellm_unauthorized_quirks(litellm_proxy, client):
    missing = client.get(f"{litellm_proxy.url}/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "401"  # a string, not a number
    # Quirk: without a database, a wrong key is 400 no_db_connection, not 401.
    wrong = client.get(f"{litellm_proxy.url}/models", headers={"Authorization": "Bearer sk-x"})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["type"] == "no_db_connection"
