"""Bad input at the relay: schemathesis against its own OpenAPI document, then hand-made
corpora of broken bodies, content types, sizes, headers and raw HTTP. The relay answers each in
the OpenAI envelope (or aiohttp's plain 400 before routing), never a 500, and stays healthy."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from chatprovider.relay import AuthMode, RelaySettings
from chatprovider_tools.devserver import DevServer
from tests.integration.relay.conftest import RelayThread, provider_body

from .harness import proc_stats, wait_for

MSG = [{"role": "user", "content": "hi"}]
ST = Path(sys.executable).parent / "st"
EXAMPLES = 60


@pytest.fixture()
def wired(kubeconfig):
    with DevServer("generic", models=["m"]) as up:
        relay = RelayThread(RelaySettings(port=0, auth_mode=AuthMode.NONE, access_log=False,
                                          max_body_bytes=1024 * 1024), kubeconfig).start()
        try:
            relay.add(provider_body("ns", "p", up.url, ["m"]))
            yield relay, up
        finally:
            relay.stop()


def test_schemathesis_against_the_relays_own_openapi(wired, tmp_path, figure) -> None:
    relay, _ = wired
    report = tmp_path / "st.xml"
    # A 400 the schema cannot express is a valid answer to a schema-valid forward: an ambiguous
    # bare model, a pin that contradicts the model. (Schemathesis' coverage phase also sends an
    # X-ChatProvider that ignores the header's declared pattern.)
    (tmp_path / "schemathesis.toml").write_text("".join(
        f'[[operations]]\ninclude-name = "POST {path}"\n'
        'checks.positive_data_acceptance.expected-statuses = '
        '["2xx", "400", "401", "403", "404", "429", "5xx"]\n\n'
        for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                     "/v1/responses", "/v1/messages", "/v1/messages/count_tokens")))
    started = time.monotonic()
    proc = subprocess.run(
        [str(ST), "run", f"{relay.base}/openapi.json", "--checks", "all",
         "--max-examples", str(EXAMPLES), "--seed", "20251", "--request-timeout", "10",
         "--no-color", "--report", "junit", "--report-junit-path", str(report)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    took = time.monotonic() - started
    generated = re.search(r"(\d+) generated", proc.stdout)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert relay.call(lambda: True)  # still serving
    assert httpx.get(f"{relay.base}/healthz").status_code == 200
    figure("schemathesis (all checks, all phases) against GET /openapi.json",
           f"{generated.group(1) if generated else '?'} generated requests over 11 operations "
           f"({EXAMPLES} examples per operation, fixed seed) in {took:.0f} s: 0 failures")


BAD_BODIES: dict[str, bytes] = {
    "empty": b"",
    "truncated": b'{"model": "m", "messages": [',
    "array": b"[]",
    "string": b'"m"',
    "null": b"null",
    "number model": b'{"model": 1, "messages": []}',
    "empty model": b'{"model": "", "messages": []}',
    "stream not bool": b'{"model": "m", "messages": [], "stream": "yes"}',
    "NaN": b'{"model": "m", "messages": [], "temperature": NaN}',
    "invalid UTF-8": b'{"model": "m\xff\xfe", "messages": []}',
    "lone surrogate": b'{"model": "\\ud800", "messages": []}',
    "deep nesting": b'{"model": "m", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "BOM": b'\xef\xbb\xbf{"model": "m", "messages": []}',
    "trailing garbage": b'{"model": "m", "messages": []} {"model": "x"}',
    "huge number": b'{"model": "m", "messages": [], "n": 1' + b"0" * 5000 + b"}",
    "NUL in model": b'{"model": "m\\u0000", "messages": []}',
}


def test_broken_bodies_are_400s_in_the_envelope(wired, figure) -> None:
    relay, up = wired
    seen: dict[str, int] = {}
    for name, body in BAD_BODIES.items():
        resp = httpx.post(f"{relay.url}/chat/completions", content=body, timeout=30,
                          headers={"Content-Type": "application/json"})
        seen[name] = resp.status_code
        assert resp.status_code < 500, (name, resp.status_code, resp.text[:300])
        if resp.status_code != 200:
            assert "error" in resp.json(), name
    codes = sorted(set(seen.values()))
    forwarded = [name for name, body in BAD_BODIES.items()
                 if any(r.raw == body for r in up.requests)]
    # only what Python's json module reads as an object with a string model goes upstream (it
    # takes NaN, Infinity and huge integers), and the upstream decides
    assert set(forwarded) <= {"NaN", "huge number", "NUL in model"}, forwarded
    figure("malformed JSON bodies", f"{len(BAD_BODIES)} kinds answered {codes}, never 5xx; "
           f"forwarded (upstream decides): {forwarded}; per kind: {seen}")


@pytest.mark.parametrize(("content_type", "status"), [
    ("text/plain", 415), ("multipart/form-data; boundary=x", 415),
    ("application/x-www-form-urlencoded", 415), ("application/xml", 415),
    ("application/json; charset=utf-8", 200), ("application/vnd.api+json", 200),
    (None, 200),
])
def test_content_types(wired, content_type, status) -> None:
    relay, _ = wired
    headers = {"Content-Type": content_type} if content_type else {}
    resp = httpx.post(f"{relay.url}/chat/completions", headers=headers,
                      content=json.dumps({"model": "m", "messages": MSG}).encode())
    assert resp.status_code == status, resp.text
    if status != 200:
        assert resp.json()["error"]["code"] == "unsupported_media_type"


def test_oversize_bodies_and_headers(wired, figure) -> None:
    relay, up = wired
    big = json.dumps({"model": "m", "messages": [{"role": "user",
                                                  "content": "x" * (2 * 1024 * 1024)}]}).encode()
    rss_before = proc_stats().rss_kb
    rows = []
    declared = httpx.post(f"{relay.url}/chat/completions", content=big,
                          headers={"Content-Type": "application/json"})
    rows.append(f"2 MiB body {declared.status_code}")
    chunked = httpx.post(f"{relay.url}/chat/completions", content=iter([big[:4096]] * 512),
                         headers={"Content-Type": "application/json"})
    rows.append(f"2 MiB chunked {chunked.status_code}")
    assert declared.status_code == chunked.status_code == 413
    assert declared.json()["error"]["code"] == "request_too_large"
    long_header = httpx.post(f"{relay.url}/chat/completions", json={"model": "m"},
                             headers={"X-Long": "y" * 10_000})
    many = httpx.post(f"{relay.url}/chat/completions", json={"model": "m"},
                      headers={f"X-H{i}": "v" for i in range(200)})
    rows += [f"10 kB header {long_header.status_code}", f"200 headers {many.status_code}"]
    assert long_header.status_code in (400, 431) and many.status_code in (400, 431)
    assert up.journal.total == 0
    grown = (proc_stats().rss_kb - rss_before) / 1024
    assert httpx.get(f"{relay.base}/healthz").status_code == 200
    figure("oversize bodies and headers", ", ".join(rows) +
           f"; nothing reached the upstream; test process RSS +{grown:.1f} MiB")


def test_unknown_fields_pass_through_untouched(wired) -> None:
    relay, up = wired
    body = (b'{"model":"ns/p/m","messages":[{"role":"user","content":"hi"}],'
            b'"x_vendor":{"deep":[1,2.50,{"k":null}]},"temperature":0.7000,'
            b'"\xc3\xa9t\xc3\xa9":"\\u00e9","stream_options":{"future":true},"n":1}')
    resp = httpx.post(f"{relay.url}/chat/completions", content=body,
                      headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    forwarded = up.requests[-1].raw
    assert forwarded == body.replace(b'"ns/p/m"', b'"m"')


RAW_REQUESTS = {
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    "HTTP/0.9": b"GET /v1/models\r\n\r\n",
    "bad version": b"GET /v1/models HTTP/9.9\r\nHost: x\r\n\r\n",
    "huge method": b"X" * 10_000 + b" / HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad chunk size": (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\n{}\r\n0\r\n\r\n"),
    "CL and TE": (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "short body then close": (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                              b'{"model":'),
    "NUL in header": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "obs-fold": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
}


def test_raw_malformed_http_leaves_the_relay_healthy(wired, figure) -> None:
    relay, _ = wired
    port = relay.relay.port if relay.relay else 0
    tasks_before = relay.call(lambda: len(__import__("asyncio").all_tasks()))
    answers = {}
    for name, data in RAW_REQUESTS.items():
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(data)
            if name == "short body then close":
                sock.shutdown(socket.SHUT_WR)
            try:
                first = sock.recv(64)
            except (TimeoutError, ConnectionResetError):
                first = b""
        status = first.split(b" ")[1].decode() if first.startswith(b"HTTP/") else "closed"
        answers[name] = status
        assert status != "500", name
    assert httpx.get(f"{relay.base}/healthz").status_code == 200
    # the handlers of the closed connections end shortly after: wait for it
    def tasks() -> int:
        return relay.call(lambda: len(__import__("asyncio").all_tasks()))

    tasks_after = wait_for(lambda: (n := tasks()) <= tasks_before + 1 and n, timeout=10,
                           what=f"relay tasks back to {tasks_before} (+1)")
    figure("raw malformed HTTP (9 kinds)", f"answers {answers}; relay healthy, asyncio tasks "
           f"{tasks_before}->{tasks_after}")
