"""The relay's conformance suite: every API a client speaks, through the relay, to two real
servers of different makers, llama.cpp's own ``llama-server`` (Gemma 3 270M) and LiteLLM's proxy
(its mock models), each behind a :class:`RecordingProxy` that keeps the bytes it carries.

For each call the relay's answer must be exactly what that server sent for that request (status,
``Content-Type`` and every byte of the body, streams included), and the request the server got
must be the client's with only ``model`` changed (the qualified id becomes the server's own).
What each server sends differs, and the relay must not care. LiteLLM's mock models (1.83) have
two quirks, recorded here so that a LiteLLM release that changes them is noticed: asked to
stream ``/v1/messages`` they answer one JSON message, and asked to stream ``/v1/responses`` they
fail with a 500 in OpenAI's envelope (``'async for' requires an object with __aiter__``). Both
reach the client exactly as LiteLLM sent them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from tests.integration.test_llama_server import MESSAGES_STREAM_ORDER, collapsed

from .conftest import create_secret, provider_body
from .recording import RecordingProxy

pytestmark = pytest.mark.realupstream

HELLO = [{"role": "user", "content": "Say hello."}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


@dataclass
class Server:
    """One real server behind a recording proxy, registered with a relay."""

    name: str
    relay: httpx.Client
    proxy: RecordingProxy
    upstream_model: str
    namespace: str

    @property
    def model(self) -> str:
        return f"{self.namespace}/{self.name}/{self.upstream_model}"

    def post(self, path: str, body: dict[str, object], **headers: str) -> httpx.Response:
        """POST through the relay; the answer read whole (streams too)."""
        with self.relay.stream("POST", path, json=body, headers=headers) as answer:
            answer.read()
        return answer

    def relayed_unchanged(self, answer: httpx.Response, sent: dict[str, object]) -> bytes:
        """The relay answered exactly what the server sent, and the server was asked exactly
        what the client asked with its own model id; the body returned."""
        request, upstream = self.proxy.last_exchange()
        assert answer.status_code == int(upstream.start.split()[1]), upstream.body[:300]
        assert answer.headers["content-type"] == upstream.header("content-type")[0]
        assert answer.content == upstream.body and answer.content
        if answer.status_code < 400:
            assert answer.headers["x-chatprovider"] == f"{self.namespace}/{self.name}"
        assert json.loads(request.body) == {**sent, "model": self.upstream_model}
        return answer.content


def _events(body: bytes) -> list[tuple[str | None, str]]:
    out = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "data" in fields:
            out.append((fields.get("event"), fields["data"]))
    return out


@pytest.fixture(params=["llama-server", "litellm"])
def server(request, relay_factory, k8s, namespace) -> Iterator[Server]:
    if request.param == "llama-server":
        real = request.getfixturevalue("llama_server")
        model = real.models[0]
    else:
        real = request.getfixturevalue("litellm_proxy")
        model = real.mock_models[0]
    port = int(real.base_url.rsplit(":", 1)[1])
    proxy = RecordingProxy(port)
    create_secret(k8s, namespace, "key", real.api_key)
    relay = relay_factory()
    relay.add(provider_body(namespace, request.param, f"http://127.0.0.1:{proxy.port}/v1",
                            [model], key_secret="key"))
    with httpx.Client(base_url=relay.base, timeout=120, trust_env=False) as client:
        yield Server(request.param, client, proxy, model, namespace)
    proxy.close()


def test_chat_and_its_stream(server: Server) -> None:
    body = {"model": server.model, "messages": HELLO, "max_tokens": 4, "temperature": 0}
    answer = server.post("/v1/chat/completions", body)
    assert json.loads(server.relayed_unchanged(answer, body))["object"] == "chat.completion"

    streamed = {**body, "stream": True}
    chunks = _events(server.relayed_unchanged(server.post("/v1/chat/completions", streamed),
                                              streamed))
    assert chunks[-1] == (None, "[DONE]")
    assert json.loads(chunks[0][1])["object"] == "chat.completion.chunk"


def test_chat_with_tools(server: Server) -> None:
    body = {"model": server.model, "max_tokens": 8, "temperature": 0, "tools": [WEATHER_TOOL],
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}]}
    answer = server.post("/v1/chat/completions", body)
    assert json.loads(server.relayed_unchanged(answer, body))["choices"]


def test_responses_and_their_stream(server: Server) -> None:
    body = {"model": server.model, "input": "Say hello.", "max_output_tokens": 16,
            "temperature": 0}
    answer = json.loads(server.relayed_unchanged(server.post("/v1/responses", body), body))
    assert answer["object"] == "response"

    streamed = {**body, "stream": True}
    relayed = server.post("/v1/responses", streamed)
    sent = server.relayed_unchanged(relayed, streamed)
    if server.name == "litellm":  # its mock cannot stream the Responses API
        assert relayed.status_code == 500 and "__aiter__" in json.loads(sent)["error"]["message"]
        return
    names = [name for name, _ in _events(sent)]
    assert names[0] == "response.created" and names[-1] == "response.completed"


def test_messages_and_their_stream(server: Server) -> None:
    body = {"model": server.model, "messages": HELLO, "max_tokens": 4}
    headers = {"anthropic-version": "2023-06-01"}
    answer = server.post("/v1/messages", body, **headers)
    assert json.loads(server.relayed_unchanged(answer, body))["type"] == "message"

    streamed = {**body, "stream": True}
    relayed = server.post("/v1/messages", streamed, **headers)
    sent = server.relayed_unchanged(relayed, streamed)
    if server.name == "litellm":  # its mock answers a stream request with one message
        assert relayed.headers["content-type"] == "application/json"
        assert json.loads(sent)["type"] == "message"
        return
    assert collapsed([name for name, _ in _events(sent)]) == MESSAGES_STREAM_ORDER


def test_embeddings_on_llama_server(relay_factory, k8s, namespace,
                                    llama_server_embeddings) -> None:
    real = llama_server_embeddings
    proxy = RecordingProxy(int(real.base_url.rsplit(":", 1)[1]))
    create_secret(k8s, namespace, "key", real.api_key)
    relay = relay_factory()
    relay.add(provider_body(namespace, "embed", f"http://127.0.0.1:{proxy.port}/v1",
                            [real.models[0]], key_secret="key"))
    try:
        with httpx.Client(base_url=relay.base, timeout=120, trust_env=False) as client:
            served = Server("embed", client, proxy, real.models[0], namespace)
            body = {"model": served.model, "input": ["hello", "world"]}
            answer = json.loads(served.relayed_unchanged(served.post("/v1/embeddings", body),
                                                         body))
            assert [d["index"] for d in answer["data"]] == [0, 1]
    finally:
        proxy.close()
