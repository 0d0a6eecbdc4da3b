"""Hot key rotation under traffic: the Secret changes, requests keep flowing, none fails.

The order a careful operator follows (and docs/relay.md describes): the upstream accepts the old
and the new key; the Secret is changed; the relay picks the new key up from its Secret watch on
the next request (no restart); once the upstream sees only the new key, the old one is revoked.
"""

from __future__ import annotations

import threading
import time

from .conftest import create_secret, provider_body, replace_secret, wait_until

MSG = [{"role": "user", "content": "hello"}]
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


def test_rotation_under_traffic_fails_no_request(relay, make_upstream, k8s, namespace) -> None:
    upstream = make_upstream("vllm", api_keys={"key-one"})
    create_secret(k8s, namespace, "llm-key", "key-one")
    relay.add(provider_body(namespace, "vllm", upstream.url, upstream.models,
                            key_secret="llm-key"))
    stop = threading.Event()
    outcomes: list[tuple[float, bool, str]] = []

    def traffic(stream: bool) -> None:
        client = relay.client()
        while not stop.is_set():
            try:
                if stream:
                    chunks = list(client.chat.completions.create(
                        model=LLAMA, messages=MSG, stream=True))
                    ok = bool(chunks)
                else:
                    ok = bool(client.chat.completions.create(model=LLAMA, messages=MSG).choices)
                outcomes.append((time.monotonic(), ok, ""))
            except Exception as exc:  # noqa: BLE001 - counted as a failed request
                outcomes.append((time.monotonic(), False, repr(exc)))

    def only_the_new_key_in_use() -> bool:
        """The last 8 requests came with the new key, and none with the old one is in flight."""
        seen = upstream.requests
        return (len(seen) >= 8 and all(r.api_key == "key-two" for r in seen[-8:])
                and not any(r.api_key == "key-one" and r.outcome == "pending" for r in seen))

    workers = [threading.Thread(target=traffic, args=(i % 2 == 1,)) for i in range(4)]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: len(outcomes) > 20, what="traffic")
        upstream.set_api_keys({"key-one", "key-two"})       # 1. upstream accepts both
        changed = time.time()
        replace_secret(k8s, namespace, "llm-key", "key-two")  # 2. the Secret changes
        wait_until(lambda: any(r.api_key == "key-two" for r in upstream.requests[-20:]),
                   what="the upstream to see the new key")
        # timed by the upstream's clock when the request arrived, not by this test's polling
        picked_up = min(r.time for r in upstream.requests if r.api_key == "key-two") - changed
        wait_until(only_the_new_key_in_use, what="the old key out of use")
        upstream.set_api_keys({"key-two"})                   # 3. the old key is revoked
        after = len(outcomes)
        wait_until(lambda: len(outcomes) > after + 20, what="traffic after revocation")
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    failures = [o for o in outcomes if not o[1]]
    assert not failures, failures[:3]
    assert picked_up < 2.0
    assert upstream.requests[-1].api_key == "key-two"
    assert len(outcomes) > 40
