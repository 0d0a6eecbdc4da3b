"""The operator writes ChatQuota status from the real counters: the real API server, a real
redis-server, the operator in-process (its quota status pass every second), and
``chatprovider usage`` reading it back.

Counters are written the way the relay writes them (``QuotaGate.admit`` then ``settle`` on a
store of the same Redis); the tests then read what ``kubectl get cquota -o yaml`` shows.
Minute windows can turn during a test, so what is compared exactly is counted per day.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client as k8s_client
from tests.integration.controller.conftest import OperatorThread, wait_for
from tests.integration.operator_stack import OperatorStack

from chatprovider.api.quota import ChatQuota
from chatprovider.cli import main
from chatprovider.controller.app import OperatorApp
from chatprovider.counters import CounterStore, QuotaGate, RedisCounterStore
from chatprovider.domain.quota import Demand, Quota, applicable_limits
from chatprovider.domain.routing import ProviderRef
from chatprovider.relay import RelaySettings
from chatprovider.settings import OperatorSettings
from chatprovider_tools.redisserver import RedisServer, RedisServerError

GROUP, VERSION, PLURAL = "ai.chatprovider.dev", "v1alpha1", "chatquotas"
PASSWORD = "s3cret-counter-pass"


@dataclass(frozen=True)
class Caller:
    username: str
    groups: tuple[str, ...] = ()


APP = Caller("system:serviceaccount:team-a:app",
             ("system:serviceaccounts", "system:serviceaccounts:team-a", "system:authenticated"))


@pytest.fixture(autouse=True)
def _crds(chatprovider_crd, kubectl) -> None:
    wait_for(lambda: kubectl("get", "chatquotas", "-A", check=False).returncode == 0, 30,
             what="chatquotas to be served")


@pytest.fixture
def secured_redis() -> Iterator[RedisServer]:
    """A redis-server of this test that requires a password; the test may kill it."""
    server = RedisServer(password=PASSWORD)
    try:
        server.start()
    except RedisServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.close()


OperatorFactory = Callable[..., OperatorThread]


@pytest.fixture
def operator_with(kubeconfig, namespace) -> Iterator[OperatorFactory]:
    """``operator_with(store, **settings)``: the operator of this test's namespace, its quota
    status pass every second, reading ``store``."""
    started: list[OperatorThread] = []

    def start(store: CounterStore | None, **settings: Any) -> OperatorThread:
        s = OperatorSettings(kubeconfig=str(kubeconfig), namespaces=(namespace,),
                             min_retry_seconds=1.0, health_port=0, quota_status_interval=1,
                             **settings)
        runner = OperatorThread(s)
        runner.app = OperatorApp(runner.settings, counters=store)
        started.append(runner.start())
        return runner

    yield start
    for runner in started:
        runner.stop()
    gc.collect()


def create(k8s, namespace: str, plural: str, body: dict[str, Any]) -> None:
    k8s_client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, body)


def provider(k8s, namespace: str, name: str, labels: dict[str, str]) -> None:
    create(k8s, namespace, "chatproviders", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ChatProvider",
        "metadata": {"name": name, "labels": labels},
        "spec": {"endpoint": "http://127.0.0.1:9/v1"}})


def quota(k8s, namespace: str, name: str, limits: dict[str, int],
          providers: dict[str, Any] | None = None, scope: str = "PerSubject") -> ChatQuota:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ChatQuota",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"providers": providers or {"selector": {"matchLabels": {"pool": "gpu"}}},
                     "subjects": [{"kind": "Group", "name": "system:serviceaccounts:team-a"}],
                     "scope": scope, "limits": limits}}
    create(k8s, namespace, PLURAL, body)
    return ChatQuota.model_validate(body)


def charge(url: str, namespace: str, resource: ChatQuota, requests: int, reserved: Demand,
           used: Demand, password: str | None = None) -> None:
    """``requests`` requests of APP to the provider vllm, reserved and then settled, as the
    relay does them."""
    limits = applicable_limits([Quota.of(resource)], APP, ProviderRef(namespace, "vllm"),
                               {"pool": "gpu"})
    assert limits

    async def run() -> None:
        store = RedisCounterStore(url, password=password)
        gate = QuotaGate(store, fail_open=False)
        try:
            for _ in range(requests):
                admission = await gate.admit(limits, reserved)
                assert await gate.settle(admission, used)
        finally:
            await store.aclose()

    asyncio.run(run())


def provider_lists(kubectl) -> float:
    """How many LISTs of ChatProviders the API server has answered so far (its own
    ``apiserver_request_total``)."""
    metrics = kubectl("get", "--raw", "/metrics").stdout
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("apiserver_request_total{") and 'verb="LIST"' in line
               and 'resource="chatproviders"' in line)


def cquota(kubectl, namespace: str, name: str) -> dict[str, Any]:
    """The quota as ``kubectl get cquota -o yaml`` shows it."""
    out = kubectl("get", "cquota", name, "-n", namespace, "-o", "yaml").stdout
    return yaml.safe_load(out)  # type: ignore[no-any-return]


def condition(body: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in (body.get("status") or {}).get("conditions") or []
                 if c["type"] == kind), None)


def test_counters_in_redis_appear_in_the_status_and_an_unchanged_usage_writes_nothing(
        k8s, kubectl, kubeconfig, namespace, redis_server, operator_with) -> None:
    provider(k8s, namespace, "vllm", {"pool": "gpu"})
    provider(k8s, namespace, "ollama", {"pool": "cpu"})
    team = quota(k8s, namespace, "team-a",
                 {"requestsPerMinute": 100, "tokensPerMinute": 100000, "tokensPerDay": 10000})
    budget = quota(k8s, namespace, "budget", {"tokensPerDay": 1000}, scope="PerCaller")
    charge(redis_server.url, namespace, team, 3, Demand(100, 200), Demand(80, 20))
    charge(redis_server.url, namespace, budget, 2, Demand(100, 200), Demand(150, 100))
    operator = operator_with(RedisCounterStore(redis_server.url))

    def usage_of(name: str) -> list[dict[str, Any]] | None:
        return (cquota(kubectl, namespace, name).get("status") or {}).get("usage")

    (entry,) = wait_for(lambda: usage_of("team-a"), 20, what="team-a's status.usage")
    assert entry["subject"] == "Group:system:serviceaccounts:team-a"
    assert entry["tokensToday"] == 300  # settled: 3 x (80 + 20), not the 900 reserved
    assert entry["peakFraction"] == pytest.approx(0.03, abs=0.01)
    body = cquota(kubectl, namespace, "team-a")
    status = body["status"]
    assert status["providers"] == ["vllm"]
    assert status["observedGeneration"] == body["metadata"]["generation"]
    ready, reported = condition(body, "Ready"), condition(body, "UsageReported")
    assert ready is not None and reported is not None
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "True", "Ready", "in force for 1 provider")
    assert (reported["status"], reported["reason"]) == ("True", "UsageRead")
    assert "redis://127.0.0.1:" in reported["message"]
    assert status["usageTime"].endswith("Z")
    (spent,) = wait_for(lambda: usage_of("budget"), 20, what="budget's status.usage")
    assert (spent["subject"], spent["tokensToday"], spent["peakFraction"]) == (
        "system:serviceaccount:team-a:app", 500, 0.5)

    # nothing changes: passes go by, and nothing is written (same resourceVersion); nor is
    # every ChatProvider listed again at each pass (their labels come from the watch)
    assert operator.app.quota_status is not None
    writer = operator.app.quota_status
    watch = operator.app.watch
    assert watch is not None
    wait_for(lambda: watch.sweeper.sweeps >= 1, 20, what="the sweep after kopf's first list")
    before = cquota(kubectl, namespace, "budget")["metadata"]["resourceVersion"]
    passes, lists = writer.passes, provider_lists(kubectl)
    wait_for(lambda: writer.passes >= passes + 5, 20, what="five more passes")
    assert cquota(kubectl, namespace, "budget")["metadata"]["resourceVersion"] == before
    # at most a watch's re-list after a 410 Gone, and the sweep after it (two LISTs)
    assert provider_lists(kubectl) - lists <= 2

    # more usage: written within the interval, with a new usageTime
    charge(redis_server.url, namespace, budget, 1, Demand(100, 200), Demand(100, 100))
    wait_for(lambda: (usage_of("budget") or [{}])[0].get("tokensToday") == 700, 20,
             what="the new usage")
    after = cquota(kubectl, namespace, "budget")
    assert after["metadata"]["resourceVersion"] != before
    assert after["status"]["usage"][0]["peakFraction"] == 0.7

    # the CLI shows it against the limits
    result = CliRunner().invoke(main, ["usage", "-n", namespace, "--kubeconfig",
                                       str(kubeconfig)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["QUOTA", "SUBJECT", "LIMIT", "USED", "MAX", "USE"]
    rows = [line.split() for line in lines[1:]]
    assert ["budget", "system:serviceaccount:team-a:app", "tokensPerDay", "700", "1000",
            "70%"] in rows
    assert ["team-a", "Group:system:serviceaccounts:team-a", "tokensPerDay", "300", "10000",
            "3%"] in rows
    assert {r[2] for r in rows if r[0] == "team-a"} == {"requestsPerMinute", "tokensPerMinute",
                                                        "tokensPerDay"}
    every = CliRunner().invoke(main, ["usage", "-A", "-o", "json", "--kubeconfig",
                                      str(kubeconfig)])
    assert every.exit_code == 0, every.output
    mine = [r for r in json.loads(every.stdout) if r["namespace"] == namespace]
    assert {"namespace": namespace, "quota": "budget", "subject":
            "system:serviceaccount:team-a:app", "limit": "tokensPerDay", "used": 700,
            "max": 1000, "fraction": 0.7,
            "usage_time": after["status"]["usageTime"]} in mine
    one = CliRunner().invoke(main, ["usage", "-n", namespace, "budget", "--kubeconfig",
                                    str(kubeconfig)])
    assert one.exit_code == 0
    assert {line.split()[0] for line in one.stdout.splitlines()[1:]} == {"budget"}


def test_a_quota_that_selects_no_provider_and_counters_the_operator_cannot_read(
        k8s, kubectl, kubeconfig, namespace, operator_with) -> None:
    quota(k8s, namespace, "orphan", {"requestsPerMinute": 5}, providers={"names": ["gone"]})
    operator_with(None, relay=False)  # a separate relay, counters in its memory

    def conditions() -> tuple[Any, Any] | None:
        body = cquota(kubectl, namespace, "orphan")
        ready, reported = condition(body, "Ready"), condition(body, "UsageReported")
        return (ready, reported) if ready and reported else None

    ready, reported = wait_for(conditions, 20, what="the orphan's conditions")
    assert (ready["status"], ready["reason"]) == ("False", "NoProvidersSelected")
    assert (reported["status"], reported["reason"]) == ("False", "CountersInRelayMemory")
    assert "quotas.redis.url" in reported["message"]
    assert (cquota(kubectl, namespace, "orphan")["status"].get("usage") or []) == []
    # kubectl wait works on it
    kubectl("wait", "--for=condition=UsageReported=False", "-n", namespace, "cquota/orphan",
            "--timeout=10s")
    result = CliRunner().invoke(main, ["usage", "-n", namespace, "--kubeconfig",
                                       str(kubeconfig)])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1].split() == ["orphan", "-", "requestsPerMinute", "-",
                                                     "5", "-"]
    assert f"{namespace}/orphan: Ready False (NoProvidersSelected)" in result.stderr
    assert "CountersInRelayMemory" in result.stderr
    # the provider it names appears: the quota governs it from the next pass
    provider(k8s, namespace, "gone", {})
    wait_for(lambda: (condition(cquota(kubectl, namespace, "orphan"), "Ready") or {}).get(
        "status") == "True", 20, what="the quota in force once its provider exists")
    assert cquota(kubectl, namespace, "orphan")["status"]["providers"] == ["gone"]


def test_an_unreachable_redis_is_a_condition_without_its_password(
        k8s, kubectl, namespace, secured_redis, operator_with) -> None:
    provider(k8s, namespace, "vllm", {"pool": "gpu"})
    team = quota(k8s, namespace, "team-a", {"tokensPerDay": 10000})
    charge(secured_redis.url, namespace, team, 1, Demand(10, 10), Demand(10, 10),
           password=PASSWORD)
    operator_with(RedisCounterStore(secured_redis.url, password=PASSWORD, timeout=0.2),
                  quota_redis_url=secured_redis.url, quota_redis_password=PASSWORD)

    def reason() -> str | None:
        cond = condition(cquota(kubectl, namespace, "team-a"), "Ready")
        return cond["reason"] if cond else None

    wait_for(lambda: reason() == "Ready", 20, what="Ready")
    assert cquota(kubectl, namespace, "team-a")["status"]["usage"][0]["tokensToday"] == 20
    secured_redis.kill()
    wait_for(lambda: reason() == "CounterStoreUnavailable", 20, what="the outage")
    shown = kubectl("get", "cquota", "team-a", "-n", namespace, "-o", "yaml").stdout
    assert PASSWORD not in shown
    body = yaml.safe_load(shown)
    ready, reported = condition(body, "Ready"), condition(body, "UsageReported")
    assert ready is not None and reported is not None
    assert ready["status"] == "False"
    assert ready["message"].startswith(
        f"the Redis counter store at redis://127.0.0.1:{secured_redis.port} is unavailable")
    assert "refused with 503 (fail closed)" in ready["message"]
    assert (reported["status"], reported["reason"]) == ("False", "CounterStoreUnavailable")
    # the last usage read is kept, with its time
    assert body["status"]["usage"][0]["tokensToday"] == 20
    events = kubectl("get", "events", "-n", namespace, "-o", "yaml").stdout
    assert PASSWORD not in events
    secured_redis.start()  # back, empty (no persistence)
    wait_for(lambda: reason() == "Ready", 20, what="Ready again")
    assert (cquota(kubectl, namespace, "team-a")["status"].get("usage") or []) == []


def test_with_the_relay_embedded_usage_is_read_from_the_operators_own_memory(
        k8s, kubectl, kubeconfig, namespace) -> None:
    """No Redis: the embedded relay's counters are the operator process's (OperatorApp.counters),
    which the status writer reads."""
    provider(k8s, namespace, "vllm", {"pool": "gpu"})
    team = quota(k8s, namespace, "team-a", {"tokensPerDay": 10000})
    stack = OperatorStack(kubeconfig, RelaySettings(port=0), namespaces=(namespace,))
    stack.app = OperatorApp(stack.settings.model_copy(update={"quota_status_interval": 1}),
                            relay=stack._start_relay)
    with stack:
        store = stack.app.counters
        limits = applicable_limits([Quota.of(team)], APP, ProviderRef(namespace, "vllm"),
                                   {"pool": "gpu"})

        async def charge_in_memory() -> None:
            gate = QuotaGate(store, fail_open=False)
            await gate.settle(await gate.admit(limits, Demand(50, 50)), Demand(40, 2))

        assert stack._loop is not None  # the operator's loop owns the store
        asyncio.run_coroutine_threadsafe(charge_in_memory(), stack._loop).result(10)

        def usage() -> list[dict[str, Any]] | None:
            return (cquota(kubectl, namespace, "team-a").get("status") or {}).get("usage")

        (entry,) = wait_for(usage, 20, what="usage from memory")
        assert entry["tokensToday"] == 42
        reported = condition(cquota(kubectl, namespace, "team-a"), "UsageReported")
        assert reported is not None and reported["reason"] == "UsageRead"
        assert "embedded relay's memory" in reported["message"]
