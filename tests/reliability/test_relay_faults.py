"""The relay against upstreams that fail in every way we could think of, with the time each
failure takes to reach the client and the resources it leaves behind."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import openai
import pytest

from chatprovider_tools.controlplane.plane import free_port
from chatprovider_tools.devserver import DevServer
from tests.integration.relay.conftest import RelayThread, provider_body

from .harness import RawServer, http_head, proc_stats, read_request, sse_chunk, wait_for

MSG = [{"role": "user", "content": "hello"}]
MODEL = "m"
TIMEOUTS = {"connect": "1s", "request": "1s", "streamIdle": "1s"}


@pytest.fixture()
def make_relay(kubeconfig):
    started: list[RelayThread] = []

    def make(**settings) -> RelayThread:
        from chatprovider.relay import AuthMode, RelaySettings

        settings.setdefault("port", 0)
        settings.setdefault("auth_mode", AuthMode.NONE)
        settings.setdefault("access_log", False)
        relay = RelayThread(RelaySettings(**settings), kubeconfig).start()
        started.append(relay)
        return relay

    yield make
    for relay in started:
        relay.stop()


def chat(relay: RelayThread, stream: bool = False, timeout: float = 30.0, **body) -> httpx.Response:
    payload = {"model": MODEL, "messages": MSG, "stream": stream, **body}
    return httpx.post(f"{relay.url}/chat/completions", json=payload, timeout=timeout)


def error_code(resp: httpx.Response) -> str:
    return str(resp.json()["error"]["code"])


def timed(fn):
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started


def events_of(text: str) -> list[str]:
    return [e for e in text.split("\n\n") if e.strip()]


# -- a matrix of upstream faults -------------------------------------------------------------------
async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)  # accepts, reads the request, never answers


def test_upstream_fault_matrix(make_relay, figure) -> None:
    """Each fault gives a distinct OpenAI error quickly: the client is never left hanging."""
    relay = make_relay()
    black_hole = RawServer(_silent)
    rows: list[str] = []
    try:
        with DevServer("generic", models=[MODEL]) as up:
            relay.add(provider_body("f", "dev", up.url, [MODEL], timeouts=TIMEOUTS))
            relay.add(provider_body("f", "refused", f"http://127.0.0.1:{free_port()}/v1",
                                    ["refused-m"], timeouts=TIMEOUTS))
            relay.add(provider_body("f", "hole", black_hole.url, ["hole-m"], timeouts=TIMEOUTS))

            def case(name, expect_status, expect_code, *, model=MODEL, limit, **behaviour):
                up.behaviour.reset()
                up.behaviour.update(**behaviour)
                resp, took = timed(lambda: chat(relay, model=model))
                assert resp.status_code == expect_status, (name, resp.text)
                if expect_code:
                    assert error_code(resp) == expect_code, (name, resp.text)
                assert took < limit, (name, took)
                rows.append(f"{name} {resp.status_code} in {took * 1000:.0f} ms")
                return resp

            # Limits only show that the client is not left hanging (the figures give the times):
            # a timeout case takes connect + first byte (2 s) and must end well before the
            # upstream's 5 s delay; the others answer in tens of milliseconds.
            case("refused", 502, "connection_refused", model="refused-m", limit=3.0)
            case("black-holed", 504, "first_byte_timeout", model="hole-m", limit=4.0)
            case("slow first byte", 504, "first_byte_timeout", limit=4.0, delay_first_byte=5)
            case("500", 500, None, limit=3.0, status=500)
            limited = case("429", 429, None, limit=3.0, status=429, retry_after=7)
            assert limited.headers["retry-after"] == "7"
            case("malformed JSON", 502, "malformed_response", limit=3.0, malformed_json=True)
            # the client of a request cut by a timeout goes away: so does the upstream request
            assert up.wait_cancelled(1, timeout=5)
    finally:
        black_hole.close()
    figure("relay upstream faults (time to the client's error)", "; ".join(rows))


def test_slow_and_cut_streams(make_relay, figure) -> None:
    relay = make_relay(keepalive_interval=0.15)
    with DevServer("generic", models=[MODEL]) as up:
        relay.add(provider_body("f", "dev", up.url, [MODEL], timeouts=TIMEOUTS))
        # slow but alive: frames every 0.5 s (< streamIdle 1 s) complete, with keep-alives
        up.behaviour.update(frame_delay=0.5, stream_frames=3)
        slow = chat(relay, stream=True)
        events = events_of(slow.text)
        assert events[-1] == "data: [DONE]" and ": keep-alive" in events
        # too slow: 1.5 s of silence > streamIdle ends the stream with an error event
        up.behaviour.update(frame_delay=1.5, stream_frames=3)
        (idle, took_idle) = timed(lambda: chat(relay, stream=True))
        events = events_of(idle.text)
        assert "idle_timeout" in events[-1] and "[DONE]" not in idle.text
        assert took_idle < 3.5  # well before the 4.5 s the three slow frames would take
        # cut after 3 events: an error event, never a clean [DONE]
        up.behaviour.update(frame_delay=0.0, cut_stream_after=3)
        cut = chat(relay, stream=True)
        events = events_of(cut.text)
        assert len(events) == 4 and "upstream_disconnected" in events[-1]
        assert "[DONE]" not in cut.text
        with pytest.raises(openai.APIError):
            client = openai.OpenAI(base_url=relay.url, api_key="x", max_retries=0)
            list(client.chat.completions.create(model=MODEL, messages=MSG, stream=True))
            client.close()
    figure("slow stream (0.5 s between events, streamIdle 1 s)",
           "completes with keep-alives; 1.5 s silence -> idle_timeout error event after "
           f"{took_idle:.2f} s; cut stream -> upstream_disconnected event, no [DONE]")


# -- an SSE event split across TCP packets ---------------------------------------------------------
def test_sse_event_split_across_packets_reaches_the_sdk_whole(make_relay, figure) -> None:
    words = ["Hel", "lo, ", "wor", "ld"]
    stream = b"".join(sse_chunk(w) for w in words) + b"data: [DONE]\n\n"

    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        for i in range(0, len(stream), 7):  # 7-byte pieces, one HTTP chunk (packet) each
            piece = stream[i:i + 7]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.002)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    raw = RawServer(dribble)
    relay = make_relay()
    try:
        relay.add(provider_body("f", "raw", raw.url, [MODEL], timeouts=TIMEOUTS))
        with httpx.stream("POST", f"{relay.url}/chat/completions",
                          json={"model": MODEL, "messages": MSG, "stream": True}) as resp:
            received = b"".join(resp.iter_bytes())
        assert received == stream  # byte for byte, whatever the packets
        client = openai.OpenAI(base_url=relay.url, api_key="x", max_retries=0)
        text = "".join(c.choices[0].delta.content or ""
                       for c in client.chat.completions.create(model=MODEL, messages=MSG,
                                                               stream=True))
        client.close()
        assert text == "Hello, world"
        # one first token per stream, not one per fragment
        wait_for(lambda: relay.metric("chatprovider_relay_time_to_first_token_seconds_count",
                                      namespace="f", provider="raw") == 2, timeout=5,
                 what="two first tokens")
        time.sleep(0.2)
        assert relay.metric("chatprovider_relay_time_to_first_token_seconds_count",
                            namespace="f", provider="raw") == 2
    finally:
        raw.close()
    figure("SSE event split into 7-byte TCP packets",
           f"{len(stream)} bytes relayed byte-identical; SDK text intact; TTFT counted once")


# -- client disconnects -------------------------------------------------------------------------
def test_client_disconnect_cancels_the_upstream_quickly(make_relay, figure) -> None:
    relay = make_relay()
    with DevServer("generic", models=[MODEL]) as up:
        relay.add(provider_body("f", "dev", up.url, [MODEL]))
        up.behaviour.update(frame_delay=0.1, stream_frames=500)
        delays = []
        for _ in range(5):
            before = up.cancelled
            with httpx.stream("POST", f"{relay.url}/chat/completions",
                              json={"model": MODEL, "messages": MSG, "stream": True}) as resp:
                next(resp.iter_lines())
            gone = time.monotonic()
            assert up.wait_cancelled(before + 1, timeout=5)
            delays.append(time.monotonic() - gone)
    worst = max(delays) * 1000
    figure("client disconnects mid-stream -> upstream request cancelled",
           f"5/5 cancelled, worst {worst:.0f} ms after the client closed")
    assert worst < 1000


def _relay_resources(relay: RelayThread) -> dict[str, int]:
    def read() -> dict[str, int]:
        assert relay.relay is not None
        runner = relay.relay._runner
        assert runner is not None and runner.server is not None
        pool_idle = pool_busy = 0
        for session in relay.transports._sessions.values():
            connector = session.connector
            pool_idle += sum(len(v) for v in connector._conns.values())  # type: ignore[union-attr]
            pool_busy += len(connector._acquired)  # type: ignore[union-attr]
        return {"tasks": len(asyncio.all_tasks()), "client_conns": len(runner.server.connections),
                "pool_busy": pool_busy, "pool_idle": pool_idle}
    return relay.call(read)


def test_many_clients_disconnecting_leak_nothing(make_relay, figure) -> None:
    n = 100
    relay = make_relay(provider_concurrency=1000)
    with DevServer("generic", models=[MODEL]) as up:
        relay.add(provider_body("f", "dev", up.url, [MODEL]))
        chat(relay)  # warm: one pool, one connection
        time.sleep(0.2)
        before = _relay_resources(relay)
        fds_before = proc_stats().fds
        up.behaviour.update(frame_delay=0.05, stream_frames=10_000)
        barrier = threading.Barrier(n + 1)
        errors: list[BaseException] = []

        def client() -> None:
            try:
                with httpx.Client(timeout=10) as http, http.stream(
                        "POST", f"{relay.url}/chat/completions",
                        json={"model": MODEL, "messages": MSG, "stream": True}) as resp:
                    lines = resp.iter_lines()  # keep it: a dropped iterator closes the stream
                    next(lines)
                    barrier.wait(20)  # all streaming at once, then all hang up together
                    del lines
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                barrier.abort()

        threads = [threading.Thread(target=client) for _ in range(n)]
        for t in threads:
            t.start()
        peak = wait_for(lambda: up.in_flight >= n and up.in_flight, timeout=20,
                        what=f"{n} concurrent streams")
        during = _relay_resources(relay)
        barrier.wait(20)
        for t in threads:
            t.join(20)
        assert not errors, errors[:3]
        assert up.wait_cancelled(n, timeout=10), up.cancelled
        assert up.wait_idle(10)
        # handler tasks and sockets go away shortly after the connections close: wait for it
        after = wait_for(lambda: (r := _relay_resources(relay))["client_conns"] == 0
                         and r["pool_busy"] == 0 and r["tasks"] <= before["tasks"] + 1
                         and proc_stats().fds <= fds_before + 5 and r,
                         timeout=10, what=f"relay idle again (before: {before})")
        fds_after = proc_stats().fds
    assert after["tasks"] <= before["tasks"] + 1, (before, after)
    assert after["pool_busy"] == 0 and after["client_conns"] == 0
    assert fds_after <= fds_before + 5, (fds_before, fds_after)
    assert relay.metric("chatprovider_relay_in_flight", namespace="f", provider="dev") == 0
    figure(f"{n} concurrent streaming clients hang up at once",
           f"{peak} upstream streams at peak ({during['tasks']} relay tasks), all {n} upstream "
           f"requests cancelled; after: relay tasks {before['tasks']}->{after['tasks']}, "
           f"client connections {after['client_conns']}, upstream connections busy "
           f"{after['pool_busy']}, process fds {fds_before}->{fds_after}")


# -- 100 MB answers, with the relay as its own process ----------------------------------------
HUNDRED_MB = 100 * 1024 * 1024
_FRAME = sse_chunk("x" * 65_000)


async def _huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                streamed: bool) -> None:
    if streamed:
        count = HUNDRED_MB // len(_FRAME) + 1
        writer.write(http_head(200, "text/event-stream", length=count * len(_FRAME) + 14))
        for _ in range(count):
            writer.write(_FRAME)
            await writer.drain()
        writer.write(b"data: [DONE]\n\n")
    else:
        piece = b'{"pad":"' + b"x" * (1024 * 1024 - 10) + b'",'
        count = HUNDRED_MB // len(piece)
        total = count * len(piece) + 2
        writer.write(http_head(200, "application/json", length=total))
        for _ in range(count):
            writer.write(piece)
            await writer.drain()
        writer.write(b"{}")
    await writer.drain()


def test_hundred_megabyte_answers_keep_relay_memory_bounded(kubeconfig, k8s, namespace, crd,
                                                           tmp_path, figure) -> None:
    from tests.integration.controller.conftest import Providers

    from .harness import ChatproviderProcess, reset_peak_rss

    streamed = RawServer(lambda r, w: _huge(r, w, True))
    whole = RawServer(lambda r, w: _huge(r, w, False))
    relay = ChatproviderProcess(kubeconfig, tmp_path / "relay.log", command="relay",
                                namespaces=[namespace])
    providers = Providers(k8s, namespace)
    try:
        for name, server in (("streamed", streamed), ("whole", whole)):
            providers.create(name, {"endpoint": server.url,
                                    "timeouts": {"request": "30s", "streamIdle": "30s"}})
            mark_ready(providers, name, [f"{name}-m"])
        relay.start()
        wait_for(lambda: len(httpx.get(f"{relay.url}/v1/models").json()["data"]) == 2,
                 what="both providers listed by the relay")
        httpx.post(f"{relay.url}/v1/chat/completions", timeout=30,
                   json={"model": "whole-m", "messages": MSG, "max_tokens": 1})  # warm up
        base = relay.stats()
        reset_peak_rss(relay.pid)

        received = 0
        started = time.monotonic()
        with httpx.stream("POST", f"{relay.url}/v1/chat/completions", timeout=60,
                          json={"model": "streamed-m", "messages": MSG, "stream": True}) as resp:
            assert resp.status_code == 200
            for chunk in resp.iter_raw():
                received += len(chunk)
        took = time.monotonic() - started
        stream_peak = relay.stats().hwm_kb - base.rss_kb
        assert received >= HUNDRED_MB and received % 1 == 0

        reset_peak_rss(relay.pid)
        before_whole = relay.stats()
        big = httpx.post(f"{relay.url}/v1/chat/completions", timeout=60,
                         json={"model": "whole-m", "messages": MSG})
        whole_peak = relay.stats().hwm_kb - before_whole.rss_kb
        assert big.status_code == 502 and error_code(big) == "response_too_large"
        after = relay.stats()
    finally:
        relay.stop()
        streamed.close()
        whole.close()
    assert stream_peak < 40 * 1024, f"streaming grew RSS by {stream_peak} kB"
    assert whole_peak < 64 * 1024 * 2.5, f"a 100 MB JSON answer grew RSS by {whole_peak} kB"
    figure("100 MB streamed answer through the relay process",
           f"{received / 2**20:.0f} MiB passed through in {took:.1f} s "
           f"({received / 2**20 / took:.0f} MiB/s), peak RSS +{stream_peak / 1024:.1f} MiB "
           f"over {base.rss_mb:.0f} MiB")
    figure("100 MB non-streamed answer (max_response_bytes 64 MiB)",
           f"502 response_too_large, peak RSS +{whole_peak / 1024:.0f} MiB (bounded by the "
           f"limit), RSS after {after.rss_mb:.0f} MiB")


def mark_ready(providers, name: str, models: list[str]) -> None:
    """Write the status the operator would write for a Ready provider."""
    generation = providers.get(name)["metadata"]["generation"]
    providers.api.patch_namespaced_custom_object_status(
        "ai.chatprovider.dev", "v1alpha1", providers.ns, "chatproviders", name,
        {"status": {"observedGeneration": generation, "models": [{"id": m} for m in models],
                    "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                    "message": "ok", "observedGeneration": generation,
                                    "lastTransitionTime": "2025-01-01T00:00:00Z"}]}})


def test_raw_server_helpers_roundtrip() -> None:
    """The raw HTTP helper reads a request with a body (guards the harness itself)."""
    async def main() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
        reader.feed_eof()
        return await read_request(reader)
    assert asyncio.run(main()).startswith(b"POST /")
    assert json.loads(sse_chunk("a")[6:])["choices"][0]["delta"]["content"] == "a"
