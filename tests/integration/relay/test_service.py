"""Health, readiness, metrics, the OpenAPI document, and a graceful stop."""

from __future__ import annotations

import io
import json
import logging
import threading

import httpx
import pytest

from chatprovider.logs import JsonFormatter, RedactingFilter

from .conftest import provider_body, wait_until

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
MSG = [{"role": "user", "content": "hello"}]


def test_health_readiness_and_metrics(relay, upstream) -> None:
    relay.add(provider_body("team-a", "vllm", upstream.url, upstream.models))
    assert httpx.get(f"{relay.base}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{relay.base}/readyz").status_code == 200
    httpx.post(f"{relay.url}/chat/completions", json={"model": "nope", "messages": MSG})
    httpx.post(f"{relay.url}/chat/completions", json={"model": LLAMA, "messages": MSG})
    metrics = httpx.get(f"{relay.base}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'chatprovider_relay_requests_total{code="404",model="",namespace="",provider=""} 1.0' \
        in text
    assert ('chatprovider_relay_requests_total{code="200",model="meta-llama/Llama-3.1-8B-Instruct"'
            ',namespace="team-a",provider="vllm"} 1.0') in text
    assert "chatprovider_relay_request_duration_seconds_bucket" in text


def test_access_log_lines_carry_fields_in_json(relay, upstream) -> None:
    relay.add(provider_body("team-a", "vllm", upstream.url, upstream.models))
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("chatprovider.relay.access")
    access.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)
    try:
        httpx.post(f"{relay.url}/chat/completions", json={"model": LLAMA, "messages": MSG},
                   headers={"Authorization": "Bearer sk-never-logged"})
        httpx.post(f"{relay.url}/chat/completions", json={"model": "nope", "messages": MSG})
        wait_until(lambda: out.getvalue().count("\n") >= 2, what="two access lines")
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    ok, missing = (json.loads(line) for line in out.getvalue().splitlines())
    assert {k: ok[k] for k in ("method", "path", "status", "namespace", "provider", "model",
                               "stream", "failure", "attempts")} == {
        "method": "POST", "path": "/v1/chat/completions", "status": 200, "namespace": "team-a",
        "provider": "vllm", "model": LLAMA, "stream": False, "failure": None, "attempts": 1}
    assert ok["duration_ms"] > 0 and ok["message"].startswith("POST /v1/chat/completions 200 ")
    assert (missing["status"], missing["provider"]) == (404, "")
    assert "sk-never-logged" not in out.getvalue()


def test_openapi_document_describes_the_relay(relay) -> None:
    doc = httpx.get(f"{relay.base}/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert {"/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
            "/healthz", "/readyz", "/metrics"} <= set(doc["paths"])
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert {"200", "400", "401", "404", "413", "429", "502", "504"} <= set(chat["responses"])
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    for path in ("/v1/responses", "/v1/messages"):
        assert "text/event-stream" in doc["paths"][path]["post"]["responses"]["200"]["content"]
    count = doc["paths"]["/v1/messages/count_tokens"]["post"]["responses"]
    assert "text/event-stream" not in count["200"]["content"]
    assert count["404"] == {"$ref": "#/components/responses/AnthropicError"}
    assert doc["paths"]["/v1/responses"]["post"]["responses"]["404"] == {
        "$ref": "#/components/responses/Error"}
    assert doc["components"]["securitySchemes"]["apiKey"]["name"] == "x-api-key"


def test_stop_lets_a_stream_in_flight_finish(relay_factory, upstream) -> None:
    relay = relay_factory(shutdown_grace=10)
    relay.add(provider_body("team-a", "vllm", upstream.url, upstream.models))
    upstream.behaviour.update(frame_delay=0.2, stream_frames=6)
    lines: list[str] = []
    first = threading.Event()

    def consume() -> None:
        body = {"model": LLAMA, "messages": MSG, "stream": True}
        with httpx.stream("POST", f"{relay.url}/chat/completions", json=body,
                          timeout=30) as resp:
            for line in resp.iter_lines():
                if line:
                    lines.append(line)
                    first.set()

    reader = threading.Thread(target=consume)
    reader.start()
    assert first.wait(5)
    assert relay.relay is not None
    stopper = threading.Thread(target=lambda: relay.run(relay.relay.stop()))
    stopper.start()
    wait_until(lambda: not relay.relay.is_ready(), what="draining")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{relay.base}/healthz")
    reader.join(15)
    stopper.join(15)
    assert lines[-1] == "data: [DONE]"
