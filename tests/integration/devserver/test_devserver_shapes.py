"""The dev server speaks the OpenAI wire format, shaped like the flavour it imitates."""

from __future__ import annotations

import json
import ssl

import httpx
import openai
import pytest
import trustme
from devserver_helpers import KEY, VLLM_MODEL, chat_body, sse_events

from chatprovider_tools.devserver import FLAVOURS, DevServer


@pytest.mark.parametrize(
    ("flavour", "first_id", "owned_by"),
    [("vllm", VLLM_MODEL, "vllm"), ("ollama", "llama3:8b", "library"), ("tgi", "tgi", "tgi"),
     ("generic", "devserver-chat", "devserver")],
)
def test_models_list_looks_like_the_flavour(flavour, first_id, owned_by, client):
    with DevServer(flavour) as srv:
        body = client.get(f"{srv.url}/models").json()
    assert body["object"] == "list"
    assert body["data"][0]["id"] == first_id
    assert {m["object"] for m in body["data"]} == {"model"}
    assert {m["owned_by"] for m in body["data"]} == {owned_by}
    assert all(isinstance(m["created"], int) for m in body["data"])
    if flavour == "tgi":
        assert [m["id"] for m in body["data"]] == ["tgi"]


def test_flavours_carry_the_real_default_ports():
    assert {n: f.default_port for n, f in FLAVOURS.items()} == {
        "vllm": 8000, "ollama": 11434, "tgi": 8080, "generic": 8000}


def test_base_url_and_url(generic):
    assert generic.base_url == f"http://127.0.0.1:{generic.port}"
    assert generic.url == generic.base_url + "/v1"


def test_chat_completion_has_message_usage_and_unique_ids(vllm, client, auth):
    answers = [client.post(f"{vllm.url}/chat/completions", json=chat_body(), headers=auth)
               for _ in range(2)]
    body = answers[0].json()
    assert answers[0].status_code == 200
    assert answers[0].headers["content-type"].startswith("application/json")
    assert body["object"] == "chat.completion" and body["model"] == VLLM_MODEL
    assert body["id"].startswith("chatcmpl-") and body["id"] != answers[1].json()["id"]
    choice = body["choices"][0]
    text = f"Hello from {VLLM_MODEL}! This is a deterministic reply."
    assert choice["message"] == {"role": "assistant", "content": text}
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}


def test_stream_sends_chunks_then_done(vllm, client, auth):
    vllm.behaviour.stream_frames = 3
    answer = client.post(f"{vllm.url}/chat/completions", json=chat_body(stream=True), headers=auth)
    assert answer.headers["content-type"] == "text/event-stream"
    events = sse_events(answer.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(chunks) == 1 + 3 + 1  # role, 3 content frames, finish
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == f"Hello from {VLLM_MODEL}! This is a deterministic reply."
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                        "finish_reason": "stop"}
    assert all("usage" not in c for c in chunks)


def test_stream_options_include_usage_adds_a_usage_chunk(vllm, client, auth):
    body = chat_body(stream=True, stream_options={"include_usage": True}, max_tokens=2)
    events = sse_events(client.post(f"{vllm.url}/chat/completions", json=body,
                                    headers=auth).text)
    usage_chunk = json.loads(events[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 5, "completion_tokens": 2,
                                    "total_tokens": 7}
    assert json.loads(events[-3])["choices"][0]["finish_reason"] == "length"


TOOLS = [{"type": "function", "function": {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


def test_tools_give_a_tool_call_message(generic, client):
    body = client.post(f"{generic.url}/chat/completions",
                       json=chat_body("devserver-chat", tools=TOOLS)).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"example"}'}


def test_streamed_tool_call_deltas_join_into_the_arguments(generic, client):
    events = sse_events(client.post(f"{generic.url}/chat/completions", json=chat_body(
        "devserver-chat", tools=TOOLS, stream=True)).text)
    chunks = [json.loads(e) for e in events[:-1]]
    first = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    assert first["index"] == 0 and first["type"] == "function"
    arguments = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                        for c in chunks[1:-1])
    assert json.loads(arguments) == {"city": "example"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_the_openai_sdk_reads_every_answer(vllm):
    sdk = openai.OpenAI(base_url=vllm.url, api_key=KEY, max_retries=0)
    try:
        assert [m.id for m in sdk.models.list()][0] == VLLM_MODEL
        messages = [{"role": "user", "content": "hi"}]
        answer = sdk.chat.completions.create(model=VLLM_MODEL, messages=messages)
        assert answer.choices[0].message.content.startswith("Hello from")
        stream = sdk.chat.completions.create(model=VLLM_MODEL, messages=messages, stream=True,
                                             stream_options={"include_usage": True})
        chunks = list(stream)
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
        called = sdk.chat.completions.create(model=VLLM_MODEL, messages=messages, tools=TOOLS)
        assert called.choices[0].message.tool_calls[0].function.name == "get_weather"
        vectors = sdk.embeddings.create(model=VLLM_MODEL, input=["a", "b"])
        assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 8
    finally:
        sdk.close()


def test_legacy_completions_and_embeddings(generic, client):
    body = client.post(f"{generic.url}/completions",
                       json={"model": "devserver-chat", "prompt": "Once", "max_tokens": 3}).json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "Hello from devserver-chat! This"
    assert body["choices"][0]["finish_reason"] == "length"
    events = sse_events(client.post(f"{generic.url}/completions", json={
        "model": "devserver-chat", "prompt": "Once", "stream": True}).text)
    assert events[-1] == "[DONE]" and json.loads(events[0])["object"] == "text_completion"
    one = client.post(f"{generic.url}/embeddings", json={"model": "x", "input": "hello"}).json()
    again = client.post(f"{generic.url}/embeddings", json={"model": "x", "input": "hello"}).json()
    assert one["data"][0]["embedding"] == again["data"][0]["embedding"]
    assert one["object"] == "list" and one["usage"]["prompt_tokens"] == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"not json", 400), (b"[1]", 400), (b'{"messages": []}', 400),
     (b'{"model": "devserver-chat"}', 400), (b'{"model": "devserver-chat", "messages": []}', 400)],
)
def test_bad_bodies_get_400_in_the_openai_envelope(generic, client, body, status):
    answer = client.post(f"{generic.url}/chat/completions", content=body,
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


def test_unknown_model_is_404_for_vllm_but_served_by_tgi(vllm, client, auth):
    answer = client.post(f"{vllm.url}/chat/completions", json=chat_body("gpt-4"), headers=auth)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "model_not_found"
    with DevServer("tgi") as tgi:
        assert client.post(f"{tgi.url}/chat/completions",
                           json=chat_body("anything")).status_code == 200


def test_health_route_needs_no_key(vllm, client):
    assert client.get(f"{vllm.base_url}/health").status_code == 200
    with DevServer("ollama") as ollama:
        assert client.get(ollama.base_url + "/").text == "Ollama is running"


def test_tls_with_a_trustme_ca(client):
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with DevServer("ollama", ssl_context=server_context) as srv:
        assert srv.base_url.startswith("https://127.0.0.1:")
        with httpx.Client(verify=client_context) as tls_client:
            assert tls_client.get(f"{srv.url}/models").json()["data"][0]["id"] == "llama3:8b"
        with pytest.raises(httpx.ConnectError):
            client.get(f"{srv.url}/models")  # an unknown CA is refused
