"""Soak: a bounded mixed workload against ``chatprovider run`` (operator + embedded relay).

For CHATPROVIDER_SOAK_SECONDS (default 120; set it higher locally): clients stream through the
relay without pause, the stable provider's key rotates every few seconds (the documented
zero-downtime order), a second provider flaps between healthy and 503 and is re-checked on every
flip. Promise: no unexpected error, and the process's RSS and open file descriptors flat after a
warm-up (tolerances below).
"""

from __future__ import annotations

import collections
import os
import threading
import time
import uuid

import httpx

from chatprovider_tools.devserver import DevServer

from .harness import ChatproviderProcess, wait_for

DURATION = float(os.environ.get("CHATPROVIDER_SOAK_SECONDS", "120"))
WARMUP = 0.25  # fraction of the run before the baseline is taken
RSS_TOLERANCE_MB = 12.0
FD_TOLERANCE = 8
MSG = [{"role": "user", "content": "hi"}]


def test_soak_mixed_workload(kubeconfig, providers, tmp_path, figure) -> None:
    ns = providers.ns
    stop = threading.Event()
    outcomes: collections.Counter[str] = collections.Counter()
    unexpected: list[str] = []
    lock = threading.Lock()
    samples: list[tuple[float, float, int]] = []
    rotations = flips = 0

    def note(kind: str, detail: str | None = None) -> None:
        with lock:
            outcomes[kind] += 1
            if detail is not None and len(unexpected) < 50:
                unexpected.append(detail)

    key = f"k-{uuid.uuid4().hex[:8]}"
    with DevServer("generic", models=["m"], api_keys={key}) as stable, \
            DevServer("generic", models=["f"]) as flappy:
        stable.behaviour.update(stream_frames=20, frame_delay=0.01)
        providers.put_secret("key", {"apiKey": key})
        providers.create("stable", {"endpoint": stable.base_url,
                                    "apiKeySecretRef": {"name": "key"}})
        providers.create("flappy", {"endpoint": flappy.base_url,
                                    "discovery": {"interval": "10s"}})
        operator = ChatproviderProcess(kubeconfig, tmp_path / "operator.log", namespaces=[ns],
                                       extra=["--workers=4"]).start()
        url = f"{operator.url}/v1/chat/completions"
        try:
            providers.wait_reason("stable", "Ready", timeout=30)
            providers.wait_reason("flappy", "Ready", timeout=30)
            wait_for(lambda: len(httpx.get(f"{operator.url}/v1/models").json()["data"]) == 2,
                     what="both providers routable")

            def streamer() -> None:
                with httpx.Client(timeout=30) as http:
                    while not stop.is_set():
                        try:
                            with http.stream("POST", url, json={
                                    "model": f"{ns}/stable/m", "messages": MSG,
                                    "stream": True}) as resp:
                                text = "".join(resp.iter_text())
                            if resp.status_code == 200 and text.rstrip().endswith("[DONE]"):
                                note("stable stream ok")
                            else:
                                note("stable stream FAILED", f"{resp.status_code} {text[-200:]}")
                        except httpx.HTTPError as exc:
                            note("stable stream FAILED", repr(exc))

            def flapping_client() -> None:
                expected = {200: "flappy ok", 503: "flappy 503 (upstream down or not Ready)",
                            404: "flappy 404 (not Ready: invisible)"}
                with httpx.Client(timeout=30) as http:
                    while not stop.is_set():
                        try:
                            resp = http.post(url, json={"model": "f", "messages": MSG})
                        except httpx.HTTPError as exc:
                            note("flappy FAILED", repr(exc))
                            continue
                        kind = expected.get(resp.status_code)
                        if kind is None or "error" in resp.text and resp.status_code == 200:
                            note("flappy FAILED", f"{resp.status_code} {resp.text[:200]}")
                        else:
                            note(kind)
                        time.sleep(0.05)

            def rotator() -> None:
                nonlocal rotations
                current = key
                while not stop.wait(4.0):
                    new = f"k-{uuid.uuid4().hex[:8]}"
                    stable.set_api_keys({current, new})          # 1. accept both
                    providers.put_secret("key", {"apiKey": new})  # 2. change the Secret
                    deadline = time.monotonic() + 10              # 3. revoke when unused
                    while time.monotonic() < deadline and not stop.is_set():
                        recent = stable.requests[-5:]
                        if len(recent) == 5 and all(r.api_key == new for r in recent):
                            break
                        time.sleep(0.1)
                    stable.set_api_keys({new})
                    current = new
                    rotations += 1

            def flapper() -> None:
                nonlocal flips
                down = False
                while not stop.wait(3.0):
                    down = not down
                    flappy.behaviour.update(status=503 if down else None)
                    providers.patch("flappy", {"metadata": {"annotations": {
                        "ai.chatprovider.dev/refresh": str(time.time())}}})
                    flips += 1

            threads = [threading.Thread(target=streamer, daemon=True) for _ in range(4)]
            threads += [threading.Thread(target=f, daemon=True)
                        for f in (flapping_client, rotator, flapper)]
            started = time.monotonic()
            for t in threads:
                t.start()
            while time.monotonic() - started < DURATION:
                stats = operator.stats()
                samples.append((time.monotonic() - started, stats.rss_mb, stats.fds))
                time.sleep(2.0)
            stop.set()
            for t in threads:
                t.join(30)
            providers.wait_reason("stable", "Ready", timeout=30)
            final = operator.stats()
            samples.append((time.monotonic() - started, final.rss_mb, final.fds))
            events = collections.Counter(e["reason"] for e in providers.events("stable"))
        finally:
            stop.set()
            assert operator.stop() == 0, operator.tail()

    failures = sum(v for k, v in outcomes.items() if "FAILED" in k)
    assert failures == 0, (outcomes, unexpected[:10])
    assert outcomes["stable stream ok"] > 50 and outcomes["flappy ok"] > 0
    assert outcomes["flappy 503 (upstream down or not Ready)"] + \
        outcomes["flappy 404 (not Ready: invisible)"] > 0, outcomes
    baseline = [s for s in samples if s[0] >= DURATION * WARMUP]
    rss0, fd0 = baseline[0][1], baseline[0][2]
    rss_growth = max(s[1] for s in baseline) - rss0
    fd_spread = max(abs(s[2] - fd0) for s in baseline)
    assert rss_growth <= RSS_TOLERANCE_MB, samples
    assert fd_spread <= FD_TOLERANCE, samples
    assert events["CredentialRotated"] <= rotations + 1
    figure(f"soak {DURATION:.0f} s: 4 streaming clients, key rotation every 4 s, a provider "
           "flapping every 3 s",
           f"{sum(outcomes.values())} requests, 0 unexpected errors ({dict(outcomes)}); "
           f"{rotations} rotations, {flips} flips; operator+relay RSS {rss0:.0f} MiB -> "
           f"max +{rss_growth:.1f} MiB after warm-up (tolerance {RSS_TOLERANCE_MB:.0f} MiB), "
           f"open fds {fd0} +/-{fd_spread} (tolerance {FD_TOLERANCE})")
