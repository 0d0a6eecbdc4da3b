"""Upstream faults as a client sees them: typed errors, broken streams that look broken,
cancellation reaching the upstream, fail-over only before the request was sent."""

from __future__ import annotations

import json
import socket
import threading
import time

import anthropic
import httpx
import openai
import pytest

from chatprovider.domain.egress import EgressPolicy
from chatprovider.relay import BareModelPolicy

from .conftest import provider_body, wait_until

MSG = [{"role": "user", "content": "hello"}]
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sse_events(resp: httpx.Response) -> list[str]:
    text = "".join(resp.iter_text())
    return [e for e in text.split("\n\n") if e.strip()]


def stream_request(relay, **body) -> dict:
    return {"method": "POST", "url": f"{relay.url}/chat/completions",
            "json": {"model": LLAMA, "messages": MSG, "stream": True, **body}}


@pytest.fixture()
def wired(relay, upstream):
    relay.add(provider_body("team-a", "vllm", upstream.url, upstream.models,
                            timeouts={"connect": "1s", "request": "500ms",
                                      "streamIdle": "700ms"}))
    return relay, upstream


def test_refused_connection_is_502(relay) -> None:
    relay.add(provider_body("team-a", "gone", f"http://127.0.0.1:{closed_port()}/v1", ["m"]))
    with pytest.raises(openai.APIStatusError) as info:
        relay.client().chat.completions.create(model="m", messages=MSG)
    assert info.value.status_code == 502 and info.value.code == "connection_refused"
    assert relay.metric("chatprovider_relay_upstream_failures_total", namespace="team-a",
                        provider="gone", kind="connection_refused") == 1


def test_slow_first_byte_is_504_and_the_upstream_request_is_cancelled(wired) -> None:
    relay, upstream = wired
    upstream.behaviour.delay_first_byte = 3
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        relay.client().chat.completions.create(model=LLAMA, messages=MSG)
    assert info.value.status_code == 504 and info.value.code == "first_byte_timeout"
    assert time.monotonic() - started < 2.5
    assert upstream.wait_cancelled(1)


def test_upstream_5xx_and_429_pass_through_with_retry_after(wired) -> None:
    relay, upstream = wired
    client = relay.client()
    upstream.behaviour.update(status=500)
    with pytest.raises(openai.InternalServerError) as server_error:
        client.chat.completions.create(model=LLAMA, messages=MSG)
    assert server_error.value.status_code == 500
    upstream.behaviour.update(status=429, retry_after=7)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model=LLAMA, messages=MSG)
    assert limited.value.response.headers["retry-after"] == "7"
    upstream.behaviour.update(status=503, retry_after=2)
    with pytest.raises(openai.APIStatusError) as unavailable:
        client.chat.completions.create(model=LLAMA, messages=MSG, stream=True)
    assert unavailable.value.status_code == 503
    assert unavailable.value.response.headers["retry-after"] == "2"


def test_malformed_json_answer_is_502(wired) -> None:
    relay, upstream = wired
    upstream.behaviour.malformed_json = True
    with pytest.raises(openai.APIStatusError) as info:
        relay.client().chat.completions.create(model=LLAMA, messages=MSG)
    assert info.value.status_code == 502 and info.value.code == "malformed_response"


def test_stream_cut_midway_ends_with_an_error_event_and_no_done(wired) -> None:
    relay, upstream = wired
    upstream.behaviour.cut_stream_after = 3
    with httpx.stream(**stream_request(relay)) as resp:
        events = sse_events(resp)
    assert len(events) == 4
    assert json.loads(events[-1].removeprefix("data: "))["error"]["code"] == \
        "upstream_disconnected"
    assert not any("[DONE]" in e for e in events)
    with pytest.raises(openai.APIError):
        list(relay.client().chat.completions.create(model=LLAMA, messages=MSG, stream=True))


def test_silent_stream_ends_with_idle_timeout_error(wired) -> None:
    relay, upstream = wired
    upstream.behaviour.update(frame_delay=1.5, stream_frames=3)
    with httpx.stream(**stream_request(relay)) as resp:
        events = sse_events(resp)
    assert "idle_timeout" in events[-1] and not any("[DONE]" in e for e in events)
    assert upstream.wait_cancelled(1)


def test_keepalive_comments_during_silence(relay_factory, upstream) -> None:
    relay = relay_factory(keepalive_interval=0.2)
    relay.add(provider_body("team-a", "vllm", upstream.url, upstream.models))
    upstream.behaviour.update(frame_delay=0.7, stream_frames=2)
    with httpx.stream(**stream_request(relay)) as resp:
        events = sse_events(resp)
    assert ": keep-alive" in events
    assert events[-1] == "data: [DONE]"
    text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content") or ""
                   for e in events if e.startswith("data: {"))
    assert text


def test_client_disconnect_mid_stream_cancels_the_upstream_request(wired) -> None:
    relay, upstream = wired
    upstream.behaviour.update(frame_delay=0.2, stream_frames=100)
    with httpx.stream(**stream_request(relay)) as resp:
        lines = resp.iter_lines()
        assert next(lines).startswith("data: ")
    assert upstream.wait_cancelled(1, timeout=5)
    wait_until(lambda: relay.metric("chatprovider_relay_in_flight", namespace="team-a",
                                    provider="vllm") == 0, what="in-flight back to 0")
    wait_until(lambda: relay.metric("chatprovider_relay_requests_total", namespace="team-a",
                                    provider="vllm", model=LLAMA, code="499") == 1,
               what="499 recorded")


def test_failover_skips_providers_that_cannot_be_reached(relay_factory, upstream) -> None:
    policy = EgressPolicy.from_strings(deny=["127.0.0.2/32"])
    relay = relay_factory(egress=policy, bare_model_policy=BareModelPolicy.FAILOVER)
    relay.add(provider_body("a", "refused", f"http://127.0.0.1:{closed_port()}/v1", [LLAMA]))
    relay.add(provider_body("b", "denied", f"http://127.0.0.2:{upstream.port}/v1", [LLAMA]))
    relay.add(provider_body("c", "dns", "http://no-such-host.invalid/v1", [LLAMA]))
    relay.add(provider_body("d", "good", upstream.url, [LLAMA]))
    answer = relay.client().chat.completions.with_raw_response.create(model=LLAMA, messages=MSG)
    assert answer.headers["X-ChatProvider"] == "d/good"
    assert upstream.journal.total == 1


def test_no_retry_once_the_request_may_have_been_sent(relay_factory, make_upstream) -> None:
    first, second = make_upstream(), make_upstream()
    relay = relay_factory(bare_model_policy=BareModelPolicy.FAILOVER)
    relay.add(provider_body("a", "first", first.url, [LLAMA]))
    relay.add(provider_body("b", "second", second.url, [LLAMA]))
    first.behaviour.update(status=500)
    with pytest.raises(openai.InternalServerError):
        relay.client().chat.completions.create(model=LLAMA, messages=MSG)
    assert first.journal.total == 1 and second.journal.total == 0


def test_concurrency_limit_answers_429(relay_factory, upstream) -> None:
    relay = relay_factory(provider_concurrency=1, queue_timeout=0)
    relay.add(provider_body("team-a", "vllm", upstream.url, upstream.models))
    upstream.behaviour.update(frame_delay=0.3, stream_frames=5)
    with httpx.stream(**stream_request(relay)) as resp:
        lines = resp.iter_lines()
        next(lines)
        with pytest.raises(openai.RateLimitError) as info:
            relay.client().chat.completions.create(model=LLAMA, messages=MSG)
        assert info.value.code == "provider_busy"
        assert info.value.response.headers["retry-after"] == "1"
        assert [line for line in lines if line][-1] == "data: [DONE]"
    assert relay.metric("chatprovider_relay_provider_busy_total", namespace="team-a",
                        provider="vllm") == 1


def test_queueing_waits_for_a_slot(relay_factory, upstream) -> None:
    relay = relay_factory(provider_concurrency=1, queue_timeout=10)
    relay.add(provider_body("team-a", "vllm", upstream.url, upstream.models))
    upstream.behaviour.update(delay_first_byte=0.3)
    results: list[str] = []

    def call() -> None:
        answer = relay.client().chat.completions.create(model=LLAMA, messages=MSG)
        results.append(answer.choices[0].message.content or "")

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 3 and all(results)
    assert max(r.time for r in upstream.requests) - min(r.time for r in upstream.requests) > 0.5


def test_body_and_header_limits(relay_factory, upstream) -> None:
    relay = relay_factory(max_body_bytes=1024, max_header_field=2048)
    relay.add(provider_body("team-a", "vllm", upstream.url, upstream.models))
    big = {"model": LLAMA, "messages": [{"role": "user", "content": "x" * 5000}]}
    resp = httpx.post(f"{relay.url}/chat/completions", json=big)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"
    chunked = httpx.post(f"{relay.url}/chat/completions",
                         content=iter([json.dumps(big).encode()]),
                         headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413 and "error" in chunked.json()
    resp = httpx.post(f"{relay.url}/chat/completions", json={"model": LLAMA, "messages": MSG},
                      headers={"X-Big": "y" * 4000})
    assert resp.status_code in (400, 431)
    assert upstream.journal.total == 0


def test_cut_responses_and_messages_streams_end_with_each_apis_error_event(wired) -> None:
    """The upstream breaks the connection after 3 events: the Responses stream ends with
    ``event: error`` (the OpenAI SDK raises), the Anthropic one with ``event: error`` in
    Anthropic's envelope (the Anthropic SDK raises); neither claims a clean end."""
    relay, upstream = wired
    upstream.behaviour.cut_stream_after = 3
    for path, body, finish in (
            ("/responses", {"input": "hello"}, "response.completed"),
            ("/messages", {"messages": MSG, "max_tokens": 64}, "message_stop")):
        with httpx.stream("POST", relay.url + path,
                          json={"model": LLAMA, "stream": True, **body}) as resp:
            events = sse_events(resp)
        assert resp.status_code == 200 and len(events) == 4, events
        name, data = events[-1].split("\n")
        assert name == "event: error" and finish not in "".join(events)
        error = json.loads(data.removeprefix("data: "))
        if path == "/messages":
            assert error == {"type": "error", "error": {
                "type": "api_error", "message": error["error"]["message"]}}
            assert "closed the connection early" in error["error"]["message"]
        else:
            assert error["type"] == "error"
            assert error["error"]["code"] == "upstream_disconnected"
    with pytest.raises(openai.APIError):
        list(relay.client().responses.create(model=LLAMA, input="hello", stream=True))
    claude = anthropic.Anthropic(base_url=relay.base, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        with claude.messages.stream(model=LLAMA, messages=MSG, max_tokens=64) as stream:
            list(stream)
    assert info.value.body["error"]["type"] == "api_error"
    claude.close()
