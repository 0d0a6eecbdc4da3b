"""The control loop against a real API server: one provider is never checked twice at once, even
under a storm of spec changes while checks are slow; and a status field that no longer applies
is gone from the stored object (server-side apply), not left behind."""

from __future__ import annotations

import gc
from concurrent.futures import ThreadPoolExecutor

import pytest

from chatprovider.controller.status import FIELD_MANAGER
from chatprovider.settings import OperatorSettings
from chatprovider_tools.devserver import DevServer

from .conftest import OperatorThread, Providers, wait_for
from .probecounter import ProbeCounter

PROVIDERS = 10
ROUNDS = 40


@pytest.fixture(params=[16, 4], ids=["16-workers", "4-workers"])
def slow_operator(request, kubeconfig, chatprovider_crd, namespace):
    """More workers than providers (a worker is always free for a second check of a provider
    that is running), or fewer (checks wait for a worker, as at scale)."""
    settings = OperatorSettings(kubeconfig=str(kubeconfig), namespaces=(namespace,),
                                workers=request.param, min_retry_seconds=1.0)
    runner = OperatorThread(settings).start()
    yield runner
    runner.stop()
    gc.collect()


def _settled(providers: Providers, counter: ProbeCounter, final: str) -> list[str]:
    """Names of the providers whose stored status is not yet that of their final spec."""
    items = providers.api.list_namespaced_custom_object(
        "ai.chatprovider.dev", "v1alpha1", providers.ns, "chatproviders")["items"]
    behind = []
    for item in items:
        name, status = item["metadata"]["name"], item.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        if status.get("observedGeneration") != item["metadata"]["generation"] \
                or ready.get("status") != "True" or counter.last_revision(name) != final:
            behind.append(name)
    return behind


def test_no_provider_is_checked_twice_at_once_under_a_storm_of_spec_changes(
        slow_operator, providers) -> None:
    names = [f"p{i:02d}" for i in range(PROVIDERS)]
    with ProbeCounter(delay=0.25) as counter:
        for name in names:
            providers.create(name, {"endpoint": counter.url(name),
                                    "headers": [{"name": "X-Rev", "value": "0"}]})
        wait_for(lambda: counter.in_flight() > 0, timeout=30, what="the first checks")
        # The storm: every provider's spec changed ROUNDS times, from 4 threads at once, while
        # each check takes 0.25 s (changes land on queued, running and idle keys alike). Each
        # round waits for a new check to start, so the storm lasts many check durations.
        patches = 0

        def patch(change: tuple[str, str]) -> None:
            name, rev = change
            providers.patch(name, {"spec": {"headers": [{"name": "X-Rev", "value": rev}]}})

        with ThreadPoolExecutor(4) as pool:
            for rnd in range(1, ROUNDS + 1):
                started = sum(counter.total.values())
                list(pool.map(patch, [(name, str(rnd)) for name in names]))
                patches += len(names)
                wait_for(lambda s=started: sum(counter.total.values()) > s, timeout=30,
                         interval=0.01, what="a check to start during the storm")
        final = str(ROUNDS)
        wait_for(lambda: not _settled(providers, counter, final), timeout=90, interval=0.2,
                 what="every provider's status to be of its final spec")
        wait_for(lambda: counter.in_flight() == 0, timeout=10, what="no check in flight")
        generations = {n: providers.get(n)["metadata"]["generation"] for n in names}

    # Positive controls: checks did run side by side, and each provider was re-checked during
    # the storm (a change during a check ran it again), so concurrency had every chance.
    assert counter.max_all >= 2, counter.max_all
    assert all(counter.total[n] >= 3 for n in names), dict(counter.total)
    assert all(generations[n] >= ROUNDS + 1 for n in names), generations
    # The promise: never two checks of one provider at the same moment.
    assert max(counter.max_in_flight[n] for n in names) == 1, dict(counter.max_in_flight)
    # Coalesced, not replayed: far fewer checks than spec changes.
    assert sum(counter.total.values()) < patches, sum(counter.total.values())
    print(f"\n{patches} spec changes to {PROVIDERS} providers; "
          f"{sum(counter.total.values())} checks (per provider "
          f"{min(counter.total.values())}-{max(counter.total.values())}); at most "
          f"{counter.max_all} checks at once in all, at most "
          f"{max(counter.max_in_flight.values())} per provider")


def _status(providers: Providers, name: str) -> dict:
    return providers.get(name).get("status") or {}


def _status_managers(providers: Providers, name: str) -> set[tuple[str, str]]:
    return {(m["manager"], m["operation"]) for m in providers.get(name)["metadata"]
            .get("managedFields") or [] if m.get("subresource") == "status"}


def test_a_field_that_no_longer_applies_is_gone_from_the_stored_status(operator, providers
                                                                       ) -> None:
    with DevServer("generic", models=["m", "n"], api_keys={"k1"}) as up:
        providers.put_secret("key", {"apiKey": "k1"})
        providers.create("p", {"endpoint": up.base_url, "apiKeySecretRef": {"name": "key"},
                               "verification": {"enabled": True, "model": "m"}})
        providers.wait_reason("p", "Ready")
        full = _status(providers, "p")
        # Positive control: every field this test expects to go away is there first.
        assert "latencyMs" in full["lastCheck"] and "verificationLatencyMs" in full["lastCheck"]
        assert full["credentialVersion"].startswith("key@")
        assert [m["id"] for m in full["models"]] == ["m", "n"] and full["modelCount"] == 2
        assert _status_managers(providers, "p") == {(FIELD_MANAGER, "Apply")}

        # Verification turned off: no test message, so no verification latency.
        providers.patch("p", {"spec": {"verification": {"enabled": False}}})
        providers.wait_reason("p", "VerificationDisabled", type_="Verified")
        wait_for(lambda: "verificationLatencyMs" not in _status(providers, "p")["lastCheck"],
                 what="verificationLatencyMs gone")
        assert "latencyMs" in _status(providers, "p")["lastCheck"]

        # The Secret deleted: the provider is not reachable with a key any more. Nothing was
        # called, so no latency; no key in use, so no credential version; no models offered.
        providers.core.delete_namespaced_secret("key", providers.ns)
        providers.wait_reason("p", "SecretNotFound")
        gone = _status(providers, "p")
        assert "latencyMs" not in gone.get("lastCheck", {}), gone
        assert "credentialVersion" not in gone, gone
        # The discovered models are gone too: ``models: []`` with ``modelCount: 0`` says "none"
        # (an empty list is what the typed status holds, not a stale one).
        assert gone["models"] == [] and gone["modelCount"] == 0, gone

        # Discovery off with static models: the static list replaces the discovered one, and
        # the models call (and its latency) is gone even though the provider is Ready again.
        providers.put_secret("key", {"apiKey": "k1"})
        providers.wait_reason("p", "Ready")
        assert "latencyMs" in _status(providers, "p")["lastCheck"]
        providers.patch("p", {"spec": {"discovery": {"enabled": False},
                                       "models": {"static": ["s"]}}})
        wait_for(lambda: _status(providers, "p").get("models") == [{"id": "s",
                                                                     "source": "static"}],
                 what="the static model list")
        final = _status(providers, "p")
        assert "latencyMs" not in final.get("lastCheck", {}), final
        assert "time" in final["lastCheck"]
        assert _status_managers(providers, "p") == {(FIELD_MANAGER, "Apply")}
