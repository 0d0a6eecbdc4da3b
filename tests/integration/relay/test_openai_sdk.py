"""The relay through the official OpenAI SDK: models, chat, streams, tool calls, pass-through."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from .conftest import provider_body, wait_until

MSG = [{"role": "user", "content": "hello"}]
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture()
def wired(relay, upstream):
    relay.add(provider_body("team-a", "vllm", upstream.url, upstream.models))
    relay.add(provider_body("team-a", "down", "http://127.0.0.1:9/v1", ["down-model"],
                            ready=False))
    return relay, upstream


def test_models_lists_qualified_ids_of_ready_providers_without_calling_upstream(wired) -> None:
    relay, upstream = wired
    models = relay.client().models.list()
    assert [m.id for m in models] == [f"team-a/vllm/{m}" for m in upstream.models]
    assert models.data[0].owned_by == "team-a/vllm"
    assert upstream.journal.total == 0
    assert relay.client().models.retrieve(f"team-a/vllm/{LLAMA}").id == f"team-a/vllm/{LLAMA}"


def test_chat_with_qualified_and_bare_ids(wired) -> None:
    relay, upstream = wired
    client = relay.client()
    for model in (f"team-a/vllm/{LLAMA}", LLAMA):
        answer = client.chat.completions.create(model=model, messages=MSG)
        assert answer.choices[0].message.content
        assert answer.usage is not None and answer.usage.completion_tokens > 0
        assert upstream.requests[-1].model == LLAMA
    assert relay.metric("chatprovider_relay_requests_total", namespace="team-a",
                        provider="vllm", model=LLAMA, code="200") == 2
    assert relay.metric("chatprovider_relay_tokens_total", namespace="team-a", provider="vllm",
                        model=LLAMA, direction="completion") > 0


def test_body_reaches_upstream_byte_for_byte_except_the_model(wired) -> None:
    relay, upstream = wired
    raw = ('{"messages": [{"role": "user", "content": "h\\u00e9"}],  "model": "team-a/vllm/'
           + LLAMA + '", "x_vendor": {"keep": [1, 2.50, null]}, "temperature": 0.70}')
    resp = httpx.post(f"{relay.url}/chat/completions", content=raw,
                      headers={"Content-Type": "application/json",
                               "Authorization": "Bearer caller-secret", "Cookie": "a=b",
                               "X-Request-Id": "req-1"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-ChatProvider"] == "team-a/vllm"
    seen = upstream.requests[-1]
    assert seen.raw == raw.replace(f"team-a/vllm/{LLAMA}", LLAMA).encode()
    assert seen.authorization is None and "Cookie" not in seen.headers
    assert seen.headers["X-Request-Id"] == "req-1"


def test_stream_with_usage_arrives_chunk_by_chunk(wired) -> None:
    relay, upstream = wired
    upstream.behaviour.frame_delay = 0.01
    stream = relay.client().chat.completions.create(
        model=LLAMA, messages=MSG, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage is not None
    assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}
    wait_until(lambda: relay.metric("chatprovider_relay_time_to_first_token_seconds_count",
                                    namespace="team-a", provider="vllm") == 1, what="ttft")
    wait_until(lambda: relay.metric("chatprovider_relay_tokens_total", namespace="team-a",
                                    provider="vllm", model=LLAMA, direction="prompt") > 0,
               what="usage counted")


def test_tool_calls_stream_through(wired) -> None:
    relay, _ = wired
    tools = [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}}, "required": ["city"]}}}]
    answer = relay.client().chat.completions.create(model=LLAMA, messages=MSG, tools=tools)
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    stream = relay.client().chat.completions.create(model=LLAMA, messages=MSG, tools=tools,
                                                    stream=True)
    pieces = [tc for c in stream if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert pieces[0].function.name == "get_weather"
    arguments = "".join(p.function.arguments or "" for p in pieces)
    assert json.loads(arguments) == json.loads(call.function.arguments)


def test_completions_and_embeddings_pass_through(wired) -> None:
    relay, upstream = wired
    client = relay.client()
    text = client.completions.create(model=LLAMA, prompt="once upon")
    assert text.choices[0].text
    streamed = list(client.completions.create(model=LLAMA, prompt="once", stream=True))
    assert streamed
    vectors = client.embeddings.create(model=f"team-a/vllm/{LLAMA}", input=["a", "b"])
    assert len(vectors.data) == 2
    assert upstream.requests[-1].path == "/v1/embeddings"


def test_routing_errors_are_typed_sdk_exceptions(wired, make_upstream) -> None:
    relay, upstream = wired
    client = relay.client()
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-5", messages=MSG)
    assert info.value.code == "model_not_found"
    assert f"team-a/vllm/{LLAMA}" in info.value.message
    with pytest.raises(openai.APIStatusError) as not_ready:
        client.chat.completions.create(model="team-a/down/down-model", messages=MSG)
    assert not_ready.value.status_code == 503
    other = make_upstream("vllm")
    relay.add(provider_body("team-b", "vllm", other.url, other.models))
    with pytest.raises(openai.BadRequestError) as ambiguous:
        client.chat.completions.create(model=LLAMA, messages=MSG)
    assert ambiguous.value.code == "ambiguous_model"
    assert "team-a/vllm/" in ambiguous.value.message and "team-b/vllm/" in ambiguous.value.message
    answer = client.chat.completions.create(model=LLAMA, messages=MSG,
                                            extra_headers={"X-ChatProvider": "team-b/vllm"})
    assert answer.choices[0].message.content and other.journal.total == 1


@pytest.mark.parametrize("body, content_type, status", [
    (b"{not json", "application/json", 400),
    (b'{"messages": []}', "application/json", 400),
    (b"[1]", "application/json", 400),
    (b"model=x", "application/x-www-form-urlencoded", 415),
])
def test_bad_requests(relay, body: bytes, content_type: str, status: int) -> None:
    resp = httpx.post(f"{relay.url}/chat/completions", content=body,
                      headers={"Content-Type": content_type})
    assert resp.status_code == status
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}


def test_unknown_route_and_method_are_enveloped(relay) -> None:
    resp = httpx.get(f"{relay.base}/v2/nothing")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    resp = httpx.get(f"{relay.url}/chat/completions")
    assert resp.status_code == 405 and "error" in resp.json()
