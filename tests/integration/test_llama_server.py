"""Conformance probe: what llama.cpp's own ``llama-server`` answers on each route the relay will
carry, talked to directly (no relay). docs/conformance/llama-server.md records the same facts;
the relay will later be checked to pass them through unchanged.

Gemma 3 270M is a base model: the tests assert shapes, event orders, envelopes and token
accounting, never content, and always bound the output (``max_tokens``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import anthropic
import httpx
import openai
import pytest
from tests.realupstreams import LLAMA_MODEL_ALIAS, LLAMA_SERVER_CTX

pytestmark = pytest.mark.realupstream

MODEL = LLAMA_MODEL_ALIAS
HELLO = [{"role": "user", "content": "Say hello."}]
# Greedy sampling: the same prompt gives the same tokens, so no run meets an empty answer.
CHAT = {"model": MODEL, "messages": HELLO, "max_tokens": 4, "temperature": 0}
MESSAGES = {"model": MODEL, "messages": HELLO, "max_tokens": 4, "temperature": 0}
RESPONSES = {"model": MODEL, "input": "Say hello.", "max_output_tokens": 4, "temperature": 0}
JSON = "application/json; charset=utf-8"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
INVALID_KEY = {"error": {"message": "Invalid API Key", "type": "authentication_error",
                         "code": 401}}
RESPONSES_STREAM_ORDER = [
    "response.created", "response.in_progress", "response.output_item.added",
    "response.content_part.added", "response.output_text.delta", "response.output_text.done",
    "response.content_part.done", "response.output_item.done", "response.completed",
]
MESSAGES_STREAM_ORDER = [
    "message_start", "content_block_start", "content_block_delta", "content_block_stop",
    "message_delta", "message_stop",
]


@dataclass
class Event:
    event: str | None
    """The ``event:`` field, if any."""
    data: str


def sse(answer: httpx.Response) -> list[Event]:
    """The events of an SSE body, in order."""
    events = []
    for block in answer.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "data" in fields:
            events.append(Event(fields.get("event"), fields["data"]))
    return events


def collapsed(names: list[str]) -> list[str]:
    """``names`` with runs of the same name reduced to one (``a a b a`` -> ``a b a``)."""
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


NO_REUSE = httpx.Limits(max_keepalive_connections=0)


@pytest.fixture
def http(llama_server):
    # a connection per request (NO_REUSE): llama-server closes one after a stream or an error,
    # and a request racing that close would fail for a reason no test here is about
    with httpx.Client(base_url=llama_server.base_url, headers=llama_server.headers,
                      timeout=120.0, trust_env=False, limits=NO_REUSE) as client:
        yield client


@pytest.fixture
def bare(llama_server):
    """No key."""
    with httpx.Client(base_url=llama_server.base_url, timeout=120.0, trust_env=False,
                      limits=NO_REUSE) as client:
        yield client


@pytest.fixture
def oai(llama_server):
    with openai.OpenAI(base_url=llama_server.url, api_key=llama_server.api_key, max_retries=0,
                       http_client=openai.DefaultHttpxClient(trust_env=False)) as client:
        yield client


@pytest.fixture
def claude(llama_server):
    with anthropic.Anthropic(base_url=llama_server.base_url, api_key=llama_server.api_key,
                             max_retries=0,
                             http_client=anthropic.DefaultHttpxClient(trust_env=False)) as client:
        yield client


def prompt_tokens(http: httpx.Client, messages: list[dict]) -> int:
    """What the server counts for ``messages`` (its chat token-counting route)."""
    answer = http.post("/v1/chat/completions/input_tokens", json={"model": MODEL,
                                                                  "messages": messages})
    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "response.input_tokens"
    return int(answer.json()["input_tokens"])


# ---- health and models -------------------------------------------------------------------------
def test_headers_of_answers_streams_and_errors(http, bare):
    answers = {
        "json": http.post("/v1/chat/completions", json=CHAT),
        "stream": http.post("/v1/messages", json={**MESSAGES, "stream": True}),
        "401": bare.get("/v1/models"),
        "400": http.post("/v1/chat/completions", json={"model": MODEL}),
        "501": http.post("/v1/embeddings", json={"model": MODEL, "input": "hello"}),
    }
    for name, answer in answers.items():
        assert answer.headers["server"] == "llama.cpp", name
        assert answer.headers["access-control-allow-origin"] == "", name   # present, empty
    assert int(answers["json"].headers["content-length"]) == len(answers["json"].content)
    assert "connection" not in answers["json"].headers
    stream = answers["stream"].headers
    assert (stream["content-type"], stream["transfer-encoding"], stream["x-accel-buffering"]) \
        == ("text/event-stream", "chunked", "no")
    for name in ("401", "400", "501"):
        assert answers[name].headers["connection"] == "close", name


def test_health_needs_no_key(bare):
    for path in ("/health", "/v1/health"):
        answer = bare.get(path)
        assert (answer.status_code, answer.headers["content-type"]) == (200, JSON)
        assert answer.json() == {"status": "ok"}
        assert answer.headers["server"] == "llama.cpp"


def test_models_lists_the_alias_in_openai_and_ollama_shapes(http, oai):
    answer = http.get("/v1/models")
    assert (answer.status_code, answer.headers["content-type"]) == (200, JSON)
    body = answer.json()
    assert body["object"] == "list"
    [model] = body["data"]
    assert (model["id"], model["object"], model["owned_by"]) == (MODEL, "model", "llamacpp")
    assert isinstance(model["created"], int) and model["aliases"] == [MODEL]
    assert {"n_ctx", "n_params", "n_vocab", "size"} <= model["meta"].keys()
    assert [m["name"] for m in body["models"]] == [MODEL]   # Ollama's /api/tags shape, too
    assert [m.id for m in oai.models.list()] == [MODEL]


# ---- chat completions --------------------------------------------------------------------------
def test_chat_completion(http, oai):
    answer = http.post("/v1/chat/completions", json=CHAT)
    assert (answer.status_code, answer.headers["content-type"]) == (200, JSON)
    body = answer.json()
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    assert body["id"].startswith("chatcmpl-") and body["system_fingerprint"].startswith("b")
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 1 <= usage["completion_tokens"] <= 4
    assert usage["prompt_tokens"] == prompt_tokens(http, HELLO)
    assert "cached_tokens" in usage["prompt_tokens_details"]
    assert {"prompt_n", "predicted_n"} <= body["timings"].keys()   # llama.cpp's own extra

    sdk = oai.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4)
    assert sdk.choices[0].finish_reason in {"stop", "length"}
    assert sdk.usage is not None and 1 <= sdk.usage.completion_tokens <= 4


def test_chat_stream_is_data_only_sse_ending_with_done(http):
    answer = http.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/event-stream"
    events = sse(answer)
    assert {e.event for e in events} == {None}          # no "event:" lines
    assert events[-1].data == "[DONE]"
    chunks = [json.loads(e.data) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1 and {c["model"] for c in chunks} == {MODEL}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    reasons = [c["choices"][0]["finish_reason"] for c in chunks]
    assert reasons[:-1] == [None] * (len(chunks) - 1) and reasons[-1] in {"stop", "length"}
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert not any("usage" in c for c in chunks)        # only with stream_options.include_usage
    assert "timings" in chunks[-1]


def test_chat_stream_with_include_usage_ends_with_a_usage_chunk(http, oai):
    answer = http.post("/v1/chat/completions", json={
        **CHAT, "stream": True, "stream_options": {"include_usage": True}})
    events = sse(answer)
    assert events[-1].data == "[DONE]"
    chunks = [json.loads(e.data) for e in events[:-1]]
    last = chunks[-1]
    assert last["choices"] == []
    usage = last["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 1 <= usage["completion_tokens"] <= 4
    assert chunks[-2]["choices"][0]["finish_reason"] in {"stop", "length"}
    assert not any("usage" in c for c in chunks[:-1])

    stream = oai.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, stream=True,
                                         stream_options={"include_usage": True})
    sdk_chunks = list(stream)
    assert sdk_chunks[-1].usage is not None and sdk_chunks[-1].choices == []


def test_tools_are_accepted_but_not_rendered_by_the_gemma_template(http):
    """The Gemma turn template has no tool syntax, so llama.cpp's template analysis finds no
    tool-call format: the tools never reach the prompt and no grammar forces a call."""
    answer = http.post("/v1/chat/completions", json={
        **CHAT, "tools": [WEATHER_TOOL], "tool_choice": "required"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    message = body["choices"][0]["message"]
    assert "tool_calls" not in message and isinstance(message["content"], str)
    assert body["choices"][0]["finish_reason"] in {"stop", "length"}
    assert body["usage"]["prompt_tokens"] == prompt_tokens(http, HELLO)   # tools not in prompt


# ---- responses ---------------------------------------------------------------------------------
def test_responses(http, oai):
    answer = http.post("/v1/responses", json=RESPONSES)
    assert (answer.status_code, answer.headers["content-type"]) == (200, JSON)
    body = answer.json()
    assert body["object"] == "response" and body["model"] == MODEL
    assert body["id"].startswith("resp_")
    # "completed" even when max_output_tokens cut it short (OpenAI says "incomplete")
    assert body["status"] == "completed" and "incomplete_details" not in body
    [item] = body["output"]
    assert (item["type"], item["role"], item["status"]) == ("message", "assistant", "completed")
    assert item["id"].startswith("msg_")
    [part] = item["content"]
    assert part["type"] == "output_text" and isinstance(part["text"], str)
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert 1 <= usage["output_tokens"] <= 4
    assert usage["input_tokens"] == prompt_tokens(http, HELLO)
    assert "cached_tokens" in usage["input_tokens_details"]
    assert "output_tokens_details" not in usage

    sdk = oai.responses.create(model=MODEL, input="Say hello.", max_output_tokens=4)
    assert sdk.status == "completed" and isinstance(sdk.output_text, str)


def test_responses_stream_events_in_order_without_indexes_or_done(http, oai):
    answer = http.post("/v1/responses", json={**RESPONSES, "stream": True})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/event-stream"
    events = sse(answer)
    datas = [json.loads(e.data) for e in events]                # no "data: [DONE]"
    assert [e.event for e in events] == [d["type"] for d in datas]
    assert collapsed([d["type"] for d in datas]) == RESPONSES_STREAM_ORDER
    deltas = [d["delta"] for d in datas if d["type"] == "response.output_text.delta"]
    assert 1 <= len(deltas) <= 4
    done = next(d for d in datas if d["type"] == "response.output_text.done")
    assert done["text"] == "".join(deltas)
    # OpenAI's sequence_number, output_index and content_index are missing from every event
    assert not any({"sequence_number", "output_index", "content_index"} & d.keys()
                   for d in datas)
    assert datas[0]["response"] == {"id": datas[0]["response"]["id"], "object": "response",
                                    "status": "in_progress"}
    final = datas[-1]["response"]
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == done["text"]
    # a delta per token, except that bytes of an unfinished UTF-8 character wait for the next
    assert len(deltas) <= final["usage"]["output_tokens"] <= 4

    sdk_types = [e.type for e in oai.responses.create(model=MODEL, input="Say hello.",
                                                      max_output_tokens=4, stream=True)]
    assert collapsed(sdk_types) == RESPONSES_STREAM_ORDER


# ---- Anthropic messages ------------------------------------------------------------------------
def test_messages(http, claude):
    answer = http.post("/v1/messages", json=MESSAGES)
    assert (answer.status_code, answer.headers["content-type"]) == (200, JSON)
    body = answer.json()
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", MODEL)
    assert body["id"].startswith("chatcmpl-")          # not Anthropic's msg_
    [block] = body["content"]
    assert block["type"] == "text" and isinstance(block["text"], str)
    assert body["stop_reason"] in {"end_turn", "max_tokens"} and body["stop_sequence"] is None
    usage = body["usage"]
    assert set(usage) == {"input_tokens", "output_tokens", "cache_read_input_tokens"}
    # input_tokens counts only the tokens not read from the prompt cache
    assert usage["input_tokens"] + usage["cache_read_input_tokens"] == prompt_tokens(http, HELLO)
    assert 1 <= usage["output_tokens"] <= 4

    sdk = claude.messages.create(model=MODEL, max_tokens=4, messages=HELLO)
    assert sdk.type == "message" and sdk.content[0].type == "text"
    assert sdk.stop_reason in {"end_turn", "max_tokens"}


def test_messages_stream_events_in_order_without_ping(http, claude):
    answer = http.post("/v1/messages", json={**MESSAGES, "stream": True})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/event-stream"
    events = sse(answer)
    datas = [json.loads(e.data) for e in events]                # no "data: [DONE]"
    assert [e.event for e in events] == [d["type"] for d in datas]
    assert collapsed([d["type"] for d in datas]) == MESSAGES_STREAM_ORDER   # no "ping"
    start = datas[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 0
    deltas = [d["delta"] for d in datas if d["type"] == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"text_delta"} and 1 <= len(deltas) <= 4
    message_delta = datas[-2]
    assert message_delta["delta"]["stop_reason"] in {"end_turn", "max_tokens"}
    assert set(message_delta["usage"]) == {"output_tokens"}
    assert len(deltas) <= message_delta["usage"]["output_tokens"] <= 4

    with claude.messages.stream(model=MODEL, max_tokens=4, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.content[0].text == text
    assert final.usage.output_tokens >= 1


def test_messages_stop_sequence_says_end_turn(http):
    """Greedy output of this prompt reaches a newline within a few tokens."""
    body = http.post("/v1/messages", json={**MESSAGES, "max_tokens": 32,
                                           "stop_sequences": ["\n"]}).json()
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", "\n")   # not stop_sequence
    assert body["usage"]["output_tokens"] < 32


def test_messages_count_tokens(http, claude):
    answer = http.post("/v1/messages/count_tokens", json={"model": MODEL, "messages": HELLO})
    assert (answer.status_code, answer.headers["content-type"]) == (200, JSON)
    assert answer.json() == {"input_tokens": prompt_tokens(http, HELLO)}
    sdk = claude.messages.count_tokens(model=MODEL, messages=HELLO)
    assert sdk.input_tokens == answer.json()["input_tokens"]


def test_responses_input_tokens(http):
    answer = http.post("/v1/responses/input_tokens", json={"model": MODEL, "input": "Say hello."})
    assert answer.status_code == 200
    assert answer.json() == {"object": "response.input_tokens",
                             "input_tokens": prompt_tokens(http, HELLO)}


# ---- embeddings --------------------------------------------------------------------------------
def test_embeddings_are_501_on_a_chat_server(http):
    answer = http.post("/v1/embeddings", json={"model": MODEL, "input": "hello"})
    assert (answer.status_code, answer.headers["content-type"]) == (501, JSON)
    assert answer.json() == {"error": {
        "code": 501, "type": "not_supported_error",
        "message": "This server does not support embeddings. Start it with `--embeddings`"}}


def test_embeddings_on_a_server_started_with_embeddings(llama_server_embeddings):
    server = llama_server_embeddings
    with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=120.0,
                      trust_env=False) as http:
        answer = http.post("/v1/embeddings", json={"model": MODEL, "input": ["hello", "world"]})
        assert (answer.status_code, answer.headers["content-type"]) == (200, JSON)
        body = answer.json()
        assert (body["object"], body["model"]) == ("list", MODEL)
        assert [(d["object"], d["index"]) for d in body["data"]] == [("embedding", 0),
                                                                     ("embedding", 1)]
        assert {len(d["embedding"]) for d in body["data"]} == {640}
        assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
        # the same server still chats
        chat = http.post("/v1/chat/completions", json=CHAT)
        assert chat.status_code == 200 and chat.json()["object"] == "chat.completion"
    with openai.OpenAI(base_url=server.url, api_key=server.api_key, max_retries=0,
                       http_client=openai.DefaultHttpxClient(trust_env=False)) as oai:
        sdk = oai.embeddings.create(model=MODEL, input="hello")
    assert len(sdk.data[0].embedding) == 640


# ---- keys and errors ---------------------------------------------------------------------------
ROUTES = [
    ("GET", "/v1/models", None), ("POST", "/v1/chat/completions", CHAT),
    ("POST", "/v1/responses", RESPONSES), ("POST", "/v1/messages", MESSAGES),
    ("POST", "/v1/messages/count_tokens", {"model": MODEL, "messages": HELLO}),
    ("POST", "/v1/embeddings", {"model": MODEL, "input": "hello"}),
    ("GET", "/v1/no-such-route", None),
]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"x-api-key": "wrong"}],
                         ids=["missing", "wrong-bearer", "wrong-x-api-key"])
def test_a_wrong_or_missing_key_is_401_in_the_openai_envelope_on_every_route(bare, headers):
    for method, path, body in ROUTES:
        answer = bare.request(method, path, headers=headers, json=body)
        assert (answer.status_code, answer.headers["content-type"]) == (401, JSON), path
        assert answer.json() == INVALID_KEY, path


def test_the_key_passes_in_either_header(bare, llama_server):
    """The positive control of the test above (the other tests pass the key on each route)."""
    for headers in ({"Authorization": f"Bearer {llama_server.api_key}"},
                    {"x-api-key": llama_server.api_key}):
        answer = bare.get("/v1/models", headers=headers)
        assert answer.status_code == 200
    answer = bare.get("/v1/no-such-route", headers=llama_server.headers)
    assert answer.status_code == 404
    assert answer.json() == {"error": {"message": "File Not Found", "type": "not_found_error",
                                       "code": 404}}


def test_sdks_raise_authentication_errors(llama_server):
    with openai.OpenAI(base_url=llama_server.url, api_key="wrong", max_retries=0,
                       http_client=openai.DefaultHttpxClient(trust_env=False)) as oai:
        with pytest.raises(openai.AuthenticationError) as oai_error:
            oai.models.list()
    assert oai_error.value.status_code == 401 and oai_error.value.body == INVALID_KEY["error"]
    assert oai_error.value.type == "authentication_error"
    with anthropic.Anthropic(base_url=llama_server.base_url, api_key="wrong", max_retries=0,
                             http_client=anthropic.DefaultHttpxClient(trust_env=False)) as claude:
        with pytest.raises(anthropic.AuthenticationError) as claude_error:
            claude.messages.create(model=MODEL, max_tokens=4, messages=HELLO)
    assert claude_error.value.body == INVALID_KEY     # not Anthropic's {"type": "error", ...}


def test_error_envelopes(http):
    def error(path: str, **kwargs) -> tuple[int, dict]:
        answer = http.post(path, **kwargs)
        assert answer.headers["content-type"] == JSON
        return answer.status_code, answer.json()["error"]

    status, body = error("/v1/chat/completions", content=b"{not json",
                         headers={"content-type": "application/json"})
    assert (status, body["type"], body["code"]) == (500, "server_error", 500)
    assert body["message"].startswith("[json.exception.parse_error.101]")
    assert error("/v1/chat/completions", json={"model": MODEL}) == (400, {
        "code": 400, "message": "'messages' is required", "type": "invalid_request_error"})
    assert error("/v1/messages", json={"model": MODEL, "max_tokens": 4}) == (500, {
        "code": 500, "message": "'messages' is required", "type": "server_error"})
    assert error("/v1/responses", json={"model": MODEL}) == (400, {
        "code": 400, "message": "'input' is required", "type": "invalid_request_error"})
    status, body = error("/v1/chat/completions", json={**CHAT, "n": 2})
    assert (status, body["type"]) == (400, "invalid_request_error")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_prompt_beyond_the_context_is_400_before_any_stream_starts(http, stream):
    long = [{"role": "user", "content": "hello " * (LLAMA_SERVER_CTX + 100)}]
    answer = http.post("/v1/chat/completions", json={**CHAT, "messages": long, "stream": stream})
    assert (answer.status_code, answer.headers["content-type"]) == (400, JSON)
    body = answer.json()["error"]
    assert (body["code"], body["type"]) == (400, "exceed_context_size_error")
    assert body["n_ctx"] == LLAMA_SERVER_CTX and body["n_prompt_tokens"] > LLAMA_SERVER_CTX


def test_an_unknown_model_is_served_by_the_loaded_one(http):
    answer = http.post("/v1/chat/completions", json={**CHAT, "model": "no-such-model"})
    assert answer.status_code == 200
    assert answer.json()["model"] == MODEL
