"""Fault injection from the test thread: statuses, delays, bad bodies, cut streams, hangs."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from devserver_helpers import chat_body, sse_events

MODEL = "devserver-chat"


def test_status_with_retry_after_then_recovery(generic, client):
    generic.behaviour.status = 503
    generic.behaviour.retry_after = 2
    answer = client.post(f"{generic.url}/chat/completions", json=chat_body(MODEL))
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "2"
    assert answer.json()["error"]["type"] == "server_error"
    generic.behaviour.status = 429
    assert client.get(f"{generic.url}/models").json()["error"]["code"] == "rate_limit_exceeded"
    generic.behaviour.reset()
    assert client.get(f"{generic.url}/models").status_code == 200


def test_fail_times_then_success(generic, client):
    generic.behaviour.update(status=500, fail_times=2)
    codes = [client.get(f"{generic.url}/models").status_code for _ in range(3)]
    assert codes == [500, 500, 200]


def test_fault_paths_limit_the_fault(generic, client):
    generic.behaviour.update(status=503, fault_paths={"/v1/models"})
    assert client.get(f"{generic.url}/models").status_code == 503
    assert client.post(f"{generic.url}/chat/completions",
                       json=chat_body(MODEL)).status_code == 200


def test_delay_first_byte(generic, client):
    generic.behaviour.delay_first_byte = 0.3
    started = time.monotonic()
    assert client.get(f"{generic.url}/models").status_code == 200
    assert time.monotonic() - started >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        client.get(f"{generic.url}/models", timeout=0.1)


def test_malformed_json_and_not_openai_shape(generic, client):
    generic.behaviour.malformed_json = True
    answer = client.get(f"{generic.url}/models")
    assert answer.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        answer.json()
    events = sse_events(client.post(f"{generic.url}/chat/completions",
                                    json=chat_body(MODEL, stream=True)).text)
    with pytest.raises(json.JSONDecodeError):
        json.loads(events[0])
    generic.behaviour.update(malformed_json=False, not_openai_shape=True)
    body = client.get(f"{generic.url}/models").json()
    assert "data" not in body and "choices" not in body
    body = client.post(f"{generic.url}/chat/completions", json=chat_body(MODEL)).json()
    assert "choices" not in body
    events = sse_events(client.post(f"{generic.url}/chat/completions",
                                    json=chat_body(MODEL, stream=True)).text)
    assert "choices" not in json.loads(events[0]) and events[-1] == "[DONE]"


def test_cut_stream_after_n_frames_closes_the_connection(generic, client):
    generic.behaviour.cut_stream_after = 2
    received = []
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("POST", f"{generic.url}/chat/completions",
                           json=chat_body(MODEL, stream=True)) as answer:
            assert answer.status_code == 200
            for line in answer.iter_lines():
                if line.startswith("data: "):
                    received.append(line)
    assert len(received) == 2 and "[DONE]" not in received[-1]
    assert generic.wait_idle()
    assert generic.requests[-1].outcome == "aborted"


def test_frame_delay_paces_the_stream(generic, client):
    generic.behaviour.update(stream_frames=4, frame_delay=0.05)
    arrivals = []
    sent = time.monotonic()
    with client.stream("POST", f"{generic.url}/chat/completions",
                       json=chat_body(MODEL, stream=True)) as answer:
        for line in answer.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 1 + 4 + 1 + 1  # role, content, finish, [DONE]
    # 6 pauses between 7 frames; measured from the send, so a late read cannot shorten it
    assert arrivals[-1] - sent >= 0.05 * 6


def test_hang_never_answers_until_released(generic, client):
    generic.behaviour.hang = True
    with pytest.raises(httpx.ReadTimeout):
        client.get(f"{generic.url}/models", timeout=0.3)
    assert generic.wait_cancelled(1)  # the client gave up: the server saw it

    result = {}

    def call():
        result["status"] = httpx.get(f"{generic.url}/models", timeout=10).status_code

    thread = threading.Thread(target=call)
    thread.start()
    assert generic.journal.wait_requests(2)
    time.sleep(0.1)
    assert generic.in_flight == 1
    generic.behaviour.hang = False
    thread.join(5)
    assert result == {"status": 200}


def test_models_replaced_at_runtime(generic, client):
    generic.set_models(["new-model"])
    assert [m["id"] for m in client.get(f"{generic.url}/models").json()["data"]] == ["new-model"]
    assert generic.models == ("new-model",)
    generic.behaviour.models = ("a", "b")
    assert len(client.get(f"{generic.url}/models").json()["data"]) == 2
    generic.set_models(None)
    assert client.get(f"{generic.url}/models").json()["data"][0]["id"] == "devserver-chat"


@pytest.mark.parametrize("status", [404, 405])
def test_models_route_can_be_missing(generic, client, status):
    generic.behaviour.models_status = status
    assert client.get(f"{generic.url}/models").status_code == status
    assert client.post(f"{generic.url}/chat/completions",
                       json=chat_body(MODEL)).status_code == 200


def test_hung_requests_do_not_block_stop():
    from chatprovider_tools.devserver import DevServer

    srv = DevServer().start()
    srv.behaviour.hang = True
    thread = threading.Thread(
        target=lambda: pytest.raises(httpx.HTTPError, httpx.get, f"{srv.url}/models", timeout=10)
    )
    thread.start()
    assert srv.journal.wait_requests(1)
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 3
    thread.join(5)
