"""The request journal: what arrived (headers as sent), in-flight and cancelled requests."""

from __future__ import annotations

import time

import httpx
from devserver_helpers import KEY, VLLM_MODEL, chat_body


def test_journal_records_method_path_headers_and_body(vllm, client, auth):
    before = time.time()
    client.post(f"{vllm.url}/chat/completions?x=1", json=chat_body(),
                headers={**auth, "X-Trace": "abc"})
    client.get(f"{vllm.url}/models", headers={"Authorization": "Bearer other"})
    first, second = vllm.requests
    assert (first.method, first.path, first.query) == ("POST", "/v1/chat/completions", "x=1")
    assert first.headers["authorization"] == f"Bearer {KEY}"  # case-insensitive
    assert first.headers["X-Trace"] == "abc"
    assert first.authorization == f"Bearer {KEY}" and first.api_key == KEY
    assert first.body["messages"][0]["content"] == "Say hi" and first.model == VLLM_MODEL
    assert first.time >= before and first.status == 200 and first.outcome == "answered"
    assert (second.method, second.body, second.raw, second.status) == ("GET", None, b"", 401)
    assert second.api_key == "other"


def test_unknown_routes_and_invalid_json_are_recorded_too(generic, client):
    assert client.get(f"{generic.base_url}/nope").status_code == 404
    client.post(f"{generic.url}/chat/completions", content=b"{oops")
    nope, bad = generic.requests
    assert (nope.path, nope.status) == ("/nope", 404)
    assert bad.body is None and bad.raw == b"{oops" and bad.status == 400


def test_clear_requests(generic, client):
    client.get(f"{generic.url}/models")
    generic.clear_requests()
    assert generic.requests == [] and generic.journal.total == 0
    client.get(f"{generic.url}/models")
    assert len(generic.requests) == 1


def test_client_disconnect_mid_stream_is_counted_as_cancelled(generic, client):
    generic.behaviour.update(stream_frames=200, frame_delay=0.02)
    with client.stream("POST", f"{generic.url}/chat/completions",
                       json=chat_body("devserver-chat", stream=True)) as answer:
        lines = answer.iter_lines()
        assert next(lines).startswith("data: ")
        assert generic.in_flight == 1
    # leaving the block closes the connection before the stream ended
    assert generic.wait_cancelled(1, timeout=5)
    assert generic.cancelled == 1 and generic.in_flight == 0
    assert generic.requests[-1].outcome == "cancelled"


def test_concurrent_requests_are_all_recorded(generic):
    import concurrent.futures

    def call(i):
        with httpx.Client() as c:
            return c.post(f"{generic.url}/chat/completions",
                          json=chat_body("devserver-chat", user=str(i))).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(call, range(40))) == {200}
    assert generic.journal.total == 40 and generic.wait_idle()
    assert sorted(int(r.body["user"]) for r in generic.requests) == list(range(40))


def test_journal_limit_keeps_the_newest():
    from chatprovider_tools.devserver import DevServer

    with DevServer(journal_limit=3) as srv, httpx.Client() as c:
        for _ in range(5):
            c.get(f"{srv.url}/models")
        assert len(srv.requests) == 3 and srv.journal.total == 5
