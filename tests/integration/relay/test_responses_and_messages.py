"""OpenAI's Responses API and Anthropic's Messages API through the relay, to llama.cpp's own
``llama-server``, with the official ``openai`` and ``anthropic`` SDKs and Kubernetes auth (a
ServiceAccount token with ``use`` on the provider; the Anthropic SDK sends it as ``x-api-key``).

Between the relay and llama-server sits a :class:`RecordingProxy` (a TCP pass-through that keeps
every byte), so that the relay's answers are compared byte for byte with what llama-server sent
for *that* request: llama-server's text is the same at temperature 0 (greedy), but its ids,
timestamps, timings and prompt-cache counts change from one call to the next, so a second, direct
call would not do. Gemma 3 270M is a base model: shapes, never content; ``max_tokens`` bounds
every answer.
"""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import openai
import pytest
from tests.conftest import RELAY_AUDIENCE
from tests.integration.test_llama_server import (
    MESSAGES_STREAM_ORDER,
    RESPONSES_STREAM_ORDER,
    collapsed,
)
from tests.realupstreams import LLAMA_MODEL_ALIAS

from chatprovider.relay import AuthMode

from .conftest import create_secret, provider_body
from .recording import RecordingProxy
from .test_kubernetes_auth import grant_use

pytestmark = pytest.mark.realupstream

MODEL = LLAMA_MODEL_ALIAS
HELLO = [{"role": "user", "content": "Say hello."}]
GREEDY = {"temperature": 0}  # (this anthropic SDK has no temperature parameter)


class Wired:
    def __init__(self, relay, proxy, llama, namespace, tokens):
        self.relay, self.proxy, self.llama, self.ns, self.tokens = (
            relay, proxy, llama, namespace, tokens)
        self._closers = []

    @property
    def model(self) -> str:
        return f"{self.ns}/llama/{MODEL}"

    def openai(self, token: str = "allowed") -> openai.OpenAI:
        client = openai.OpenAI(base_url=self.relay.url, api_key=self.tokens[token],
                               max_retries=0, timeout=120,
                               http_client=openai.DefaultHttpxClient(trust_env=False))
        self._closers.append(client)
        return client

    def anthropic(self, token: str = "allowed") -> anthropic.Anthropic:
        client = anthropic.Anthropic(base_url=self.relay.base, api_key=self.tokens[token],
                                     max_retries=0, timeout=120,
                                     http_client=anthropic.DefaultHttpxClient(trust_env=False))
        self._closers.append(client)
        return client

    def http(self) -> httpx.Client:
        client = httpx.Client(base_url=self.relay.base, timeout=120, trust_env=False)
        self._closers.append(client)
        return client

    def close(self) -> None:
        for client in self._closers:
            client.close()


@pytest.fixture()
def wired(relay_factory, llama_server, k8s, namespace, mint_token):
    proxy = RecordingProxy(int(llama_server.base_url.rsplit(":", 1)[1]))
    create_secret(k8s, namespace, "llama-key", llama_server.api_key)
    relay = relay_factory(auth_mode=AuthMode.KUBERNETES)
    relay.add(provider_body(namespace, "llama", f"http://127.0.0.1:{proxy.port}/v1", [MODEL],
                            key_secret="llama-key"))
    grant_use(k8s, namespace, "app", "llama")
    tokens = {"allowed": mint_token(namespace, "app", audience=RELAY_AUDIENCE),
              "denied": mint_token(namespace, "stranger", audience=RELAY_AUDIENCE),
              "invalid": "not-a-valid-token"}
    wired = Wired(relay, proxy, llama_server, namespace, tokens)
    yield wired
    wired.close()
    proxy.close()


def events(body: bytes) -> list[tuple[str | None, dict]]:
    """(``event:`` field, decoded ``data:``) of each SSE event."""
    out = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "data" in fields:
            out.append((fields.get("event"), json.loads(fields["data"])))
    return out


def relayed_unchanged(wired: Wired, answer: httpx.Response, body: bytes):
    """The relay answered ``body`` with exactly the status, content type and bytes llama-server
    sent; returns llama-server's request and answer as recorded."""
    request, upstream = wired.proxy.last_exchange()
    assert answer.status_code == int(upstream.start.split()[1])
    assert answer.headers["content-type"] == upstream.header("content-type")[0]
    assert body == upstream.body and body
    if answer.status_code < 400:
        assert answer.headers["x-chatprovider"] == f"{wired.ns}/llama"
    return request, upstream


# ---- OpenAI Responses ------------------------------------------------------------------------
def test_responses_create_with_the_openai_sdk(wired) -> None:
    answer = wired.openai().responses.create(model=wired.model, input="Say hello.",
                                             max_output_tokens=4, temperature=0)
    assert answer.object == "response" and answer.status == "completed"
    assert answer.id.startswith("resp_") and answer.model == MODEL
    assert isinstance(answer.output_text, str)
    assert answer.usage is not None and 1 <= answer.usage.output_tokens <= 4
    request, _ = wired.proxy.last_exchange()
    assert request.start.startswith("POST /v1/responses ")
    assert json.loads(request.body)["model"] == MODEL   # the upstream id, not the qualified one
    assert request.header("authorization") == [f"Bearer {wired.llama.api_key}"]
    assert request.header("x-api-key") == []            # OpenAI's routes: the bearer only
    assert wired.tokens["allowed"] not in repr(request.headers)


def test_responses_answer_and_stream_are_llama_servers_bytes(wired) -> None:
    http = wired.http()
    auth = {"Authorization": f"Bearer {wired.tokens['allowed']}"}
    payload = {"model": wired.model, "input": "Say hello.", "max_output_tokens": 4,
               "temperature": 0}
    answer = http.post("/v1/responses", json=payload, headers=auth)
    relayed_unchanged(wired, answer, answer.content)

    with http.stream("POST", "/v1/responses", json={**payload, "stream": True},
                     headers=auth) as streamed:
        body = b"".join(streamed.iter_raw())
    relayed_unchanged(wired, streamed, body)
    assert streamed.headers["content-type"] == "text/event-stream"
    seen = events(body)
    assert collapsed([name for name, _ in seen]) == RESPONSES_STREAM_ORDER
    assert all(name == data["type"] for name, data in seen)


def test_responses_stream_with_the_openai_sdk(wired) -> None:
    stream = wired.openai().responses.create(model=MODEL, input="Say hello.",  # a bare id
                                             max_output_tokens=4, temperature=0, stream=True)
    kinds = [event.type for event in stream]
    assert collapsed(kinds) == RESPONSES_STREAM_ORDER


def test_an_upstream_error_on_responses_passes_through_unchanged(wired) -> None:
    answer = wired.http().post("/v1/responses", json={"model": wired.model},  # no input
                               headers={"Authorization": f"Bearer {wired.tokens['allowed']}"})
    relayed_unchanged(wired, answer, answer.content)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "'input' is required"


def test_responses_errors_are_in_openais_envelope(wired) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        wired.openai().responses.create(model="no-such-model", input="hi")
    assert unknown.value.code == "model_not_found" and wired.model in unknown.value.message
    with pytest.raises(openai.PermissionDeniedError) as forbidden:
        wired.openai("denied").responses.create(model=wired.model, input="hi")
    assert forbidden.value.code == "provider_forbidden"
    with pytest.raises(openai.AuthenticationError) as refused:
        wired.openai("invalid").responses.create(model=wired.model, input="hi")
    assert refused.value.code == "invalid_api_key"
    missing = wired.http().post("/v1/responses", json={"model": wired.model, "input": "hi"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"]["type"] == "authentication_error"


# ---- Anthropic Messages ----------------------------------------------------------------------
def test_messages_create_with_the_anthropic_sdk_and_a_token_in_x_api_key(wired) -> None:
    message = wired.anthropic().messages.create(model=wired.model, messages=HELLO, max_tokens=4,
                                                extra_body=GREEDY)
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and isinstance(message.content[0].text, str)
    assert message.stop_reason in {"end_turn", "max_tokens"}
    assert 1 <= message.usage.output_tokens <= 4
    request, _ = wired.proxy.last_exchange()
    assert request.start.startswith("POST /v1/messages ")
    assert json.loads(request.body)["model"] == MODEL
    # the provider's key in both headers, the caller's token in neither
    assert request.header("authorization") == [f"Bearer {wired.llama.api_key}"]
    assert request.header("x-api-key") == [wired.llama.api_key]
    assert request.header("anthropic-version")   # the SDK's own headers pass
    assert wired.tokens["allowed"] not in repr(request.headers)
    relay = wired.relay
    prompt = relay.metric("chatprovider_relay_tokens_total", namespace=wired.ns,
                          provider="llama", model=MODEL, direction="prompt")
    assert prompt == message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0)
    assert relay.metric("chatprovider_relay_requests_total", namespace=wired.ns,
                        provider="llama", model=MODEL, code="200") == 1


def test_messages_stream_with_the_anthropic_sdk(wired) -> None:
    with wired.anthropic().messages.stream(model=MODEL, messages=HELLO, max_tokens=4,
                                           extra_body=GREEDY) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    # the SDK adds a "text" event beside each text delta
    assert collapsed([k for k in kinds if k != "text"]) == MESSAGES_STREAM_ORDER
    assert final.stop_reason in {"end_turn", "max_tokens"} and final.usage.output_tokens >= 1
    # the relay counts a stream's tokens once the upstream's stream has ended, which can be
    # just after the client has read the last event
    deadline = time.monotonic() + 10
    while (completion := wired.relay.metric(
            "chatprovider_relay_tokens_total", namespace=wired.ns, provider="llama",
            model=MODEL, direction="completion")) != final.usage.output_tokens \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert completion == final.usage.output_tokens


def test_messages_answer_stream_and_count_are_llama_servers_bytes(wired) -> None:
    http = wired.http()
    auth = {"x-api-key": wired.tokens["allowed"], "anthropic-version": "2023-06-01"}
    payload = {"model": wired.model, "messages": HELLO, "max_tokens": 4, "temperature": 0}
    answer = http.post("/v1/messages", json=payload, headers=auth)
    relayed_unchanged(wired, answer, answer.content)
    assert answer.json()["type"] == "message"

    with http.stream("POST", "/v1/messages", json={**payload, "stream": True},
                     headers=auth) as streamed:
        body = b"".join(streamed.iter_raw())
    relayed_unchanged(wired, streamed, body)
    assert collapsed([name for name, _ in events(body)]) == MESSAGES_STREAM_ORDER

    counted = http.post("/v1/messages/count_tokens", json={"model": wired.model,
                                                            "messages": HELLO}, headers=auth)
    request, _ = relayed_unchanged(wired, counted, counted.content)
    assert request.start.startswith("POST /v1/messages/count_tokens ")
    assert counted.json()["input_tokens"] > 0


def test_count_tokens_with_the_anthropic_sdk(wired) -> None:
    counted = wired.anthropic().messages.count_tokens(model=wired.model, messages=HELLO)
    direct = httpx.post(f"{wired.llama.base_url}/v1/messages/count_tokens",
                        json={"model": MODEL, "messages": HELLO},
                        headers=wired.llama.headers, trust_env=False, timeout=60)
    assert counted.input_tokens == direct.json()["input_tokens"] > 0


def test_an_upstream_error_on_messages_passes_through_unchanged(wired) -> None:
    # llama-server answers a message without "messages" with a 500 in OpenAI's envelope
    answer = wired.http().post("/v1/messages", json={"model": wired.model, "max_tokens": 4},
                               headers={"x-api-key": wired.tokens["allowed"]})
    relayed_unchanged(wired, answer, answer.content)
    assert answer.status_code == 500
    assert answer.json()["error"]["message"] == "'messages' is required"


def anthropic_error(exc: anthropic.APIStatusError) -> dict:
    assert set(exc.body) == {"type", "error"} and exc.body["type"] == "error"
    assert set(exc.body["error"]) == {"type", "message"}
    return exc.body["error"]


def test_messages_errors_are_in_anthropics_envelope(wired) -> None:
    with pytest.raises(anthropic.NotFoundError) as unknown:
        wired.anthropic().messages.create(model="no-such-model", messages=HELLO, max_tokens=4)
    error = anthropic_error(unknown.value)
    assert error["type"] == "not_found_error" and wired.model in error["message"]
    with pytest.raises(anthropic.PermissionDeniedError) as forbidden:
        wired.anthropic("denied").messages.create(model=wired.model, messages=HELLO,
                                                  max_tokens=4)
    assert anthropic_error(forbidden.value)["type"] == "permission_error"
    with pytest.raises(anthropic.AuthenticationError) as refused:
        wired.anthropic("invalid").messages.count_tokens(model=wired.model, messages=HELLO)
    assert anthropic_error(refused.value)["type"] == "authentication_error"
    http = wired.http()
    missing = http.post("/v1/messages", json={"model": wired.model, "messages": HELLO,
                                               "max_tokens": 4})
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    bad_pin = http.post("/v1/messages", json={"model": MODEL, "messages": HELLO},
                        headers={"x-api-key": wired.tokens["allowed"],
                                 "X-ChatProvider": "not a provider"})
    assert bad_pin.status_code == 400
    assert bad_pin.json() == {"type": "error", "error": {
        "type": "invalid_request_error", "message": bad_pin.json()["error"]["message"]}}
    nowhere = http.post("/v1/messages/batches", json={},
                        headers={"x-api-key": wired.tokens["allowed"]})
    assert nowhere.status_code == 404 and nowhere.json()["error"]["type"] == "not_found_error"


def test_a_pinned_provider_serves_a_bare_model_on_every_api(wired) -> None:
    pin = {"X-ChatProvider": f"{wired.ns}/llama"}
    message = wired.anthropic().messages.create(model=MODEL, messages=HELLO, max_tokens=2,
                                                extra_headers=pin)
    assert message.type == "message"
    answer = wired.openai().responses.create(model=MODEL, input="hi", max_output_tokens=2,
                                             extra_headers=pin)
    assert answer.status == "completed"
    assert wired.proxy.last_exchange()[0].start.startswith("POST /v1/responses ")
