"""Quotas under faults, with real processes: redis-server killed and restarted under load (each
relay in its configured mode, no request hangs, counting resumes), a relay SIGKILLed mid-stream
(the reservation stays charged), a client that hangs up mid-stream (charged what was relayed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from chatprovider.domain.apis import Operation
from chatprovider.domain.quota.demand import demand_of
from chatprovider_tools.redisserver import RedisServer, RedisServerError
from tests.integration.quotas.conftest import QuotaSetup, charged, unique

from .harness import wait_for


@pytest.fixture()
def own_redis() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
        server.start()
    except RedisServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture()
def setup(k8s, kubectl, kubeconfig, crd, namespace, llama_server, own_redis, tmp_path
          ) -> Iterator[QuotaSetup]:
    s = QuotaSetup(k8s, kubectl, kubeconfig, namespace, llama_server, own_redis, tmp_path)
    try:
        yield s
    finally:
        s.stop()


class Load:
    """Callers sending small requests to one relay until stopped; every answer recorded as
    (status, error code, governed, seconds)."""

    def __init__(self, setup: QuotaSetup, relay, callers: int = 4) -> None:
        self.setup, self.relay = setup, relay
        self.answers: list[tuple[int, str | None, bool, float]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(callers)]

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    r = client.post(f"{self.relay.url}/v1/chat/completions",
                                    json=self.setup.body(max_tokens=1))
                except httpx.HTTPError as exc:  # a hang would end here, after 30 s
                    self.errors.append(exc)
                    continue
                code = r.json().get("error", {}).get("code") if r.status_code != 200 else None
                self.answers.append((r.status_code, code,
                                     "x-ratelimit-limit-tokens" in r.headers,
                                     time.monotonic() - began))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(40)

    def since(self, index: int) -> list[tuple[int, str | None, bool, float]]:
        return self.answers[index:]


def test_redis_killed_and_restarted_under_load(setup: QuotaSetup, figure) -> None:
    s = setup
    closed = s.relay("--quota-store-timeout=0.5")
    opened = s.relay("--quota-store-timeout=0.5", "--quota-fail-open")
    name = unique("outage")
    s.apply_quota(name, {"tokensPerDay": 10_000_000})
    for relay in (closed, opened):
        wait_for(lambda r=relay: "x-ratelimit-limit-tokens" in s.chat(r, max_tokens=1).headers,
                 timeout=10, interval=0.1, what="the quota to govern")

    with Load(s, closed) as on_closed, Load(s, opened) as on_open:
        wait_for(lambda: len(on_closed.answers) > 5 and len(on_open.answers) > 5, timeout=60,
                 what="load before the outage")
        assert {a[:3] for a in on_closed.answers + on_open.answers} == {(200, None, True)}

        s.redis.kill()
        mark_closed, mark_open = len(on_closed.answers), len(on_open.answers)
        wait_for(lambda: any(a[1] == "quota_unavailable" for a in on_closed.since(mark_closed)),
                 timeout=30, what="the fail-closed relay to refuse")
        wait_for(lambda: any(a[:3] == (200, None, False) for a in on_open.since(mark_open)),
                 timeout=30, what="the fail-open relay to admit uncounted")
        # the outage under load, for a while: every request answered, in its mode
        outage_closed, outage_open = len(on_closed.answers), len(on_open.answers)
        wait_for(lambda: len(on_closed.answers) > outage_closed + 20
                 and len(on_open.answers) > outage_open + 5, timeout=60, what="outage load")
        during_closed = on_closed.since(outage_closed)
        during_open = on_open.since(outage_open)
        # at most one request per caller was admitted before the kill and answered since
        for during, mode in ((during_closed, (503, "quota_unavailable", False)),
                             (during_open, (200, None, False))):
            before_kill = [a for a in during if a[:3] != mode]
            assert {a[:3] for a in before_kill} <= {(200, None, True)}
            assert len(before_kill) <= 4

        s.redis.start()  # same port, empty: counting starts again from zero
        back_closed, back_open = len(on_closed.answers), len(on_open.answers)
        wait_for(lambda: any(a[:3] == (200, None, True) for a in on_closed.since(back_closed))
                 and any(a[:3] == (200, None, True) for a in on_open.since(back_open)),
                 timeout=30, what="both relays counting again")
    assert not on_closed.errors and not on_open.errors  # no request hung or failed
    assert s.tokens_charged(name) > 0
    refusals = sorted(a[3] for a in during_closed if a[0] == 503)
    p50, p99 = refusals[len(refusals) // 2], refusals[int(len(refusals) * 0.99)]
    figure("quota store killed under load (fail closed)",
           f"{len(refusals)} answers 503 quota_unavailable, p50 {p50 * 1000:.0f} ms, p99"
           f" {p99 * 1000:.0f} ms, slowest {refusals[-1]:.2f}s;"
           f" fail open: {len(during_open)} admitted uncounted; counting resumed after restart")


def _stream_until_tokens(s: QuotaSetup, relay, body: dict, tokens: int):
    """Open a stream and read until ``tokens`` content chunks arrived; the client, the open
    response and its line iterator (keep it: collecting it would close the response)."""
    client = httpx.Client(timeout=60)
    response = client.send(client.build_request("POST", f"{relay.url}/v1/chat/completions",
                                                json=body), stream=True)
    assert response.status_code == 200
    seen = 0
    lines = response.iter_lines()
    for line in lines:
        if line.startswith("data: ") and '"content":"' in line:
            seen += 1
            if seen >= tokens:
                break
    return client, response, lines


def test_a_relay_killed_mid_stream_leaves_its_reservation_charged(setup: QuotaSetup,
                                                                   figure) -> None:
    s = setup
    relay = s.relay()
    name = unique("killed")
    s.apply_quota(name, {"tokensPerDay": 1_000_000, "concurrentRequests": 5})
    wait_for(lambda: "x-ratelimit-limit-tokens" in s.chat(relay, max_tokens=1).headers,
             timeout=10, interval=0.1, what="the quota to govern")
    before = s.tokens_charged(name)
    body = s.body(max_tokens=400, stream=True, content="Write a long story about a lighthouse.")
    reservation = demand_of(Operation.CHAT, body).total
    client, response, lines = _stream_until_tokens(s, relay, body, 5)
    try:
        relay.kill9()  # the stream still open: the relay dies in the middle of it
    finally:
        lines.close()
        response.close()
        client.close()
    counters = charged(s.redis.url, s.ns, name)
    assert s.tokens_charged(name) - before == reservation  # nothing settled it: all of it
    assert [v for k, v in counters.items() if "|concurrent" in k] == [1]  # a lease, expiring
    figure("relay SIGKILLed mid-stream", f"charged its reservation, {reservation} tokens"
           " (400 completion + the prompt estimate); its concurrency lease expires by itself")


def test_a_client_that_hangs_up_mid_stream_is_charged_what_was_relayed(setup: QuotaSetup,
                                                                       figure) -> None:
    s = setup
    relay = s.relay()
    name = unique("hangup")
    s.apply_quota(name, {"tokensPerDay": 1_000_000, "concurrentRequests": 5})
    wait_for(lambda: "x-ratelimit-limit-tokens" in s.chat(relay, max_tokens=1).headers,
             timeout=10, interval=0.1, what="the quota to govern")
    before = s.tokens_charged(name)
    body = s.body(max_tokens=400, stream=True, content="Write a long story about a lighthouse.")
    reserved = demand_of(Operation.CHAT, body)
    client, response, lines = _stream_until_tokens(s, relay, body, 5)
    lines.close()  # the client hangs up
    response.close()
    client.close()
    settled = wait_for(lambda: (c := s.tokens_charged(name) - before) != reserved.total and c,
                       timeout=15, what="the settlement of the stream cut short")
    completion = settled - reserved.prompt
    assert 5 <= completion < reserved.completion  # what was relayed, not the whole reservation
    counters = charged(s.redis.url, s.ns, name)
    assert [v for k, v in counters.items() if "|concurrent" in k] in ([], [0])  # released
    figure("client hung up mid-stream", f"charged {completion} completion tokens (relayed) of"
           f" {reserved.completion} reserved, plus the prompt estimate {reserved.prompt}")


def test_a_fresh_relay_is_ready_only_once_it_has_listed_the_quotas(secured_cluster, tmp_path,
                                                                   figure) -> None:
    """As the chart's relay ServiceAccount (its RBAC lists chatquotas), behind a proxy that holds
    the relay's LIST of ChatQuotas: not ready while held, and once ready, a quota that existed
    before it started governs its very first request (no unlimited start)."""
    from chatprovider_tools.controlplane.plane import write_kubeconfig
    from chatprovider_tools.devserver import DevServer

    from .harness import ChatproviderProcess
    from .test_relay_rollout import _chat, _new_namespace, _readyz, _relay_token
    from .test_secrets import _force_ready
    from .traffic import HoldingApiProxy

    cluster = secured_cluster
    ns, providers = _new_namespace(cluster)
    creds = cluster.plane.creds
    proxy = HoldingApiProxy(cluster.plane.server, creds.ca_cert, creds.serving_cert,
                            creds.serving_key, held=("chatquotas",))
    kc = write_kubeconfig(tmp_path / "relay-via-proxy", proxy.server, creds.ca_cert,
                          _relay_token(cluster), "relay")
    relay = ChatproviderProcess(kc, tmp_path / "relay.log", command="relay")
    try:
        with DevServer("generic", models=["m"], api_keys={"k1"}) as up:
            providers.put_secret("key", {"apiKey": "k1"})
            providers.create("shared", {"endpoint": up.base_url,
                                        "apiKeySecretRef": {"name": "key"}})
            _force_ready(providers, "shared")
            providers.api.create_namespaced_custom_object(
                "ai.chatprovider.dev", "v1alpha1", ns, "chatquotas",
                {"apiVersion": "ai.chatprovider.dev/v1alpha1", "kind": "ChatQuota",
                 "metadata": {"name": "nobody"},
                 "spec": {"providers": {"names": ["shared"]},
                          "subjects": [{"kind": "Group", "name": "system:unauthenticated"}],
                          "limits": {"requestsPerMinute": 0}}})
            relay.start(wait_ready=False)
            wait_for(lambda: proxy.held("chatquotas") >= 1, timeout=30,
                     what="the relay's LIST of ChatQuotas")
            assert _readyz(relay) == 503
            proxy.release("chatquotas")
            wait_for(lambda: _readyz(relay) == 200, timeout=30, what="ready after the list")
            first = _chat(relay.url, f"{ns}/shared/m")
            assert first.status_code == 429, first.text
            assert first.json()["error"]["code"] == "rate_limit_exceeded"
            assert not up.requests  # nothing reached the upstream
    finally:
        relay.stop()
        proxy.close()
    figure("fresh relay, ChatQuota list held", "503 not ready; once listed, the first request"
           " is refused by the quota that existed before it started")
