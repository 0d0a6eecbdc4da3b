"""The operator against a real API server and real HTTP upstreams shaped like vLLM, Ollama, TGI."""

from __future__ import annotations

import time

import pytest

from chatprovider_tools.controlplane.plane import free_port
from chatprovider_tools.devserver import DevServer

from .conftest import wait_for


def _first_request_with_key(server: DevServer, key: str) -> float:
    """When (``time.time()``) the upstream first received a request with this API key."""
    return min(r.time for r in server.requests if r.api_key == key)


def test_vllm_like_provider_becomes_ready_with_its_models(operator, providers, kubectl, namespace):
    with DevServer("vllm", api_keys={"k-1"}) as vllm:
        providers.put_secret("vllm-key", {"apiKey": "k-1"})
        providers.create("vllm", {"endpoint": f"{vllm.base_url}/v1/chat/completions",
                                  "serverType": "vllm",
                                  "apiKeySecretRef": {"name": "vllm-key"}})
        kubectl("wait", "--for=condition=Ready", "chatprovider/vllm", "-n", namespace,
                "--timeout=20s")
        obj = providers.get("vllm")
        status = obj["status"]
        assert status["observedGeneration"] == obj["metadata"]["generation"]
        assert status["modelCount"] == len(vllm.models) > 0
        assert [m["id"] for m in status["models"]] == sorted(vllm.models)
        assert status["endpoints"] == {"chatCompletions": f"{vllm.base_url}/v1/chat/completions",
                                       "models": f"{vllm.base_url}/v1/models"}
        assert status["credentialVersion"].startswith("vllm-key@")
        conds = {c["type"]: c for c in status["conditions"]}
        for t in ("Ready", "SecretResolved", "EndpointReachable", "Authenticated",
                  "ModelsDiscovered"):
            assert conds[t]["status"] == "True", conds[t]
        assert conds["Verified"]["reason"] == "VerificationDisabled"
        assert not obj["metadata"].get("finalizers")
        seen = [r for r in vllm.requests if r.path == "/v1/models"]
        assert seen and seen[-1].headers.get("Authorization") == "Bearer k-1"
        wait_for(lambda: any(e["reason"] == "BecameReady" for e in providers.events("vllm")),
                 what="BecameReady event")
        table = kubectl("get", "chatproviders", "-n", namespace).stdout
        assert "vllm" in table and "True" in table


def test_ollama_like_server_needs_no_key(operator, providers):
    with DevServer("ollama") as ollama:
        providers.create("ollama", {"endpoint": ollama.base_url, "serverType": "ollama"})
        providers.wait_reason("ollama", "Ready")
        status = providers.get("ollama")["status"]
        assert any(":" in m["id"] for m in status["models"])  # ollama tags such as llama3:8b
        assert providers.condition("ollama", "SecretResolved")["reason"] == "NoSecretRequired"
        assert all("Authorization" not in r.headers for r in ollama.requests)


def test_models_route_not_offered_uses_static_models(operator, providers):
    with DevServer("tgi") as tgi:
        tgi.behaviour.models_status = 404
        providers.create("static", {"endpoint": tgi.base_url, "models": {"static": ["tgi"]}})
        providers.create("nostatic", {"endpoint": tgi.base_url})
        providers.wait_reason("static", "Ready")
        assert providers.condition("static", "ModelsDiscovered")["reason"] == "StaticModels"
        assert providers.get("static")["status"]["models"] == [{"id": "tgi", "source": "static"}]
        cond = providers.wait_reason("nostatic", "ModelsRouteNotOffered")
        assert "spec.models.static" in cond["message"]


def test_allow_list_limits_the_models(operator, providers):
    with DevServer("generic", models=["llama3:8b", "llama3:70b", "mistral:7b"]) as srv:
        providers.create("p", {"endpoint": srv.base_url, "models": {"allow": ["llama3*"]}})
        providers.wait_reason("p", "Ready")
        assert [m["id"] for m in providers.get("p")["status"]["models"]] == [
            "llama3:70b", "llama3:8b"]


def test_missing_secret_then_created_becomes_ready_quickly(operator, providers):
    with DevServer("vllm", api_keys={"k"}) as srv:
        providers.create("p", {"endpoint": srv.base_url, "apiKeySecretRef": {"name": "later"}})
        providers.wait_reason("p", "SecretNotFound")
        providers.put_secret("later", {"other": "x"})
        providers.wait_reason("p", "SecretKeyMissing")
        created = time.time()
        providers.put_secret("later", {"apiKey": "k"})
        providers.wait_reason("p", "Ready")
        # how quickly the operator reacted: the upstream's clock, not this test's polling
        assert _first_request_with_key(srv, "k") - created < 3


def test_key_rotation_is_followed_within_two_seconds(operator, providers):
    with DevServer("vllm", api_keys={"old"}) as srv:
        providers.put_secret("key", {"apiKey": "old"})
        providers.create("p", {"endpoint": srv.base_url, "apiKeySecretRef": {"name": "key"}})
        providers.wait_reason("p", "Ready")
        version = providers.get("p")["status"]["credentialVersion"]

        srv.set_api_keys({"new"})
        rotated = time.time()
        providers.put_secret("key", {"apiKey": "new"})
        wait_for(lambda: any(r.api_key == "new" for r in srv.requests),
                 what="request with the new key")
        # the promise: a re-check with the new key within 2 s of the Secret's change, timed by
        # the upstream's clock when the request arrived (not by this test's polling)
        assert _first_request_with_key(srv, "new") - rotated < 2
        wait_for(lambda: providers.get("p")["status"].get("credentialVersion") != version)
        providers.wait_reason("p", "Ready")
        wait_for(lambda: any(e["reason"] == "CredentialRotated" for e in providers.events("p")),
                 what="CredentialRotated event")

        providers.put_secret("key", {"apiKey": "wrong"})
        cond = providers.wait_reason("p", "Unauthorized")
        assert cond["status"] == "False"
        assert providers.condition("p", "Authenticated")["status"] == "False"
        assert "wrong" not in providers.dump("p")


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ({"status": 503}, "UpstreamServerError"),
        ({"not_openai_shape": True}, "InvalidModelsResponse"),
        ({"malformed_json": True}, "InvalidModelsResponse"),
    ],
)
def test_upstream_failures_have_distinct_reasons(operator, providers, behaviour, reason):
    with DevServer("generic") as srv:
        for key, value in behaviour.items():
            setattr(srv.behaviour, key, value)
        providers.create("p", {"endpoint": srv.base_url})
        providers.wait_reason("p", reason)


def test_transport_failures_have_distinct_reasons(operator, providers):
    providers.create("refused", {"endpoint": f"http://127.0.0.1:{free_port()}"})
    providers.create("dns", {"endpoint": "http://no-such-host.invalid:8000"})
    providers.create("metadata", {"endpoint": "http://169.254.169.254/v1"})
    providers.create("metadata-decimal", {"endpoint": "http://2852039166/v1"})
    providers.wait_reason("refused", "ConnectionRefused")
    providers.wait_reason("dns", "DNSFailure")
    providers.wait_reason("metadata", "EgressDenied")
    providers.wait_reason("metadata-decimal", "InvalidEndpoint")  # numeric hosts are refused


def test_timeout(operator, providers):
    with DevServer("generic") as srv:
        srv.behaviour.hang = True
        providers.create("slow", {"endpoint": srv.base_url,
                                  "timeouts": {"connect": "1s", "request": "1s"}})
        providers.wait_reason("slow", "Timeout")


def test_verification_sends_a_test_message(operator, providers):
    with DevServer("vllm", api_keys={"k"}) as srv:
        providers.put_secret("key", {"apiKey": "k"})
        model = srv.models[0]
        providers.create("p", {"endpoint": srv.base_url, "apiKeySecretRef": {"name": "key"},
                               "verification": {"enabled": True, "model": model}})
        providers.wait_reason("p", "Ready")
        assert providers.condition("p", "Verified")["status"] == "True"
        chats = [r for r in srv.requests if r.path == "/v1/chat/completions"]
        assert chats and chats[-1].body["max_tokens"] == 1 and chats[-1].body["model"] == model


def test_endpoint_change_and_refresh_annotation_recheck_at_once(operator, providers):
    with DevServer("generic", models=["a"]) as one, DevServer("generic", models=["b"]) as two:
        providers.create("p", {"endpoint": one.base_url})
        providers.wait_reason("p", "Ready")
        providers.patch("p", {"spec": {"endpoint": two.base_url}})
        wait_for(lambda: [m["id"] for m in providers.get("p")["status"]["models"]] == ["b"],
                 what="models of the new endpoint")

        two.set_models(["b", "c"])
        providers.patch("p", {"metadata": {"annotations": {
            "ai.chatprovider.dev/refresh": str(time.time())}}})
        wait_for(lambda: providers.get("p")["status"]["modelCount"] == 2,
                 what="refreshed model list")
        wait_for(lambda: any(e["reason"] == "ModelsAdded" and "c" in e["message"]
                             for e in providers.events("p")), what="ModelsAdded event")


def test_periodic_recheck_notices_model_changes(operator, providers):
    with DevServer("generic", models=["a"]) as srv:
        providers.create("p", {"endpoint": srv.base_url, "discovery": {"interval": "10s"}})
        providers.wait_reason("p", "Ready")
        srv.set_models(["a", "z"])
        # due 10-11 s after Ready (interval plus up to 10% jitter)
        wait_for(lambda: providers.get("p")["status"]["modelCount"] == 2, timeout=30,
                 what="model change noticed by the periodic re-check")


def test_delete_sends_nothing_upstream_and_is_not_blocked(operator, providers):
    with DevServer("generic") as srv:
        providers.create("p", {"endpoint": srv.base_url})
        providers.wait_reason("p", "Ready")
        srv.clear_requests()
        providers.delete("p")
        wait_for(lambda: not any(o["metadata"]["name"] == "p" for o in
                                 providers.api.list_namespaced_custom_object(
                                     "ai.chatprovider.dev", "v1alpha1", providers.ns,
                                     "chatproviders")["items"]), timeout=5)
        from chatprovider.controller.workqueue import KeyState
        from chatprovider.domain.routing import ProviderRef

        reconciler, ref = operator.app.reconciler, ProviderRef(providers.ns, "p")
        # once forgotten (not in the registry, no check queued or running) nothing can follow
        wait_for(lambda: reconciler.registry.get(ref) is None
                 and reconciler.queue.state(ref) is KeyState.IDLE,
                 timeout=15, what="the operator forgot the deleted provider")
        assert srv.requests == []


def test_idle_providers_cause_no_writes_on_restart(kubeconfig, chatprovider_crd, providers,
                                                   namespace):
    """A restarted operator lists every provider, schedules each for later (its status is
    current) and neither checks nor writes anything."""
    from chatprovider.controller.workqueue import KeyState
    from chatprovider.domain.routing import ProviderRef
    from chatprovider.settings import OperatorSettings

    from .conftest import OperatorThread

    names = [f"p{i}" for i in range(5)]
    with DevServer("generic") as srv:
        settings = OperatorSettings(kubeconfig=str(kubeconfig), namespaces=(namespace,),
                                    min_retry_seconds=1.0)
        first = OperatorThread(settings).start()
        try:
            for name in names:
                providers.create(name, {"endpoint": srv.base_url})
            for name in names:
                providers.wait_reason(name, "Ready")
        finally:
            first.stop()
        versions = {n: providers.get(n)["metadata"]["resourceVersion"] for n in names}
        checks_before = len(srv.requests)
        second = OperatorThread(settings).start()
        try:
            reconciler = second.app.reconciler
            assert reconciler is not None
            refs = [ProviderRef(namespace, n) for n in names]
            wait_for(lambda: all(reconciler.queue.state(r) is KeyState.WAITING for r in refs),
                     timeout=30, what="the restarted operator listed and scheduled every provider")
            assert len(reconciler.registry) == len(names)
            assert second.stats["checks"] == 0 and second.stats["writes"] == 0, second.stats
            assert len(srv.requests) == checks_before
            assert {n: providers.get(n)["metadata"]["resourceVersion"] for n in names} == versions
        finally:
            second.stop()


def test_kubectl_explain_and_wide_columns(operator, providers, kubectl, namespace):
    with DevServer("generic") as srv:
        providers.create("p", {"endpoint": srv.base_url})
        providers.wait_reason("p", "Ready")
        wide = kubectl("get", "chatproviders", "-n", namespace, "-o", "wide").stdout
        header, row = wide.splitlines()[:2]
        assert "REASON" in header and "MODELS" in header
        assert row.split()[0] == "p" and "Ready" in row.split()
        explain = kubectl("explain", "chatprovider.spec.apiKeySecretRef").stdout
        assert "Authorization: Bearer" in explain


def test_each_change_of_the_models_is_one_event_named_by_the_readiness_it_comes_with(
        operator, providers):
    """The first Ready names the models it brings, a drop to none is BecameUnready naming the
    models removed, recovery names them again; a model gained while Ready is ModelsAdded."""
    def refresh() -> None:
        providers.patch("p", {"metadata": {"annotations": {
            "ai.chatprovider.dev/refresh": str(time.time())}}})

    def events() -> list[tuple[str, str]]:
        return sorted((e["reason"], e["message"]) for e in providers.events("p")
                      if e["reason"] in ("BecameReady", "BecameUnready", "ModelsAdded",
                                         "ModelsRemoved"))

    first = ("BecameReady", "1 model offered; models added: a")
    with DevServer("generic", models=["a"]) as srv:
        providers.create("p", {"endpoint": srv.base_url})
        providers.wait_reason("p", "Ready")
        wait_for(lambda: events() == [first], what="BecameReady naming the model")
        srv.set_models(["a", "b"])
        refresh()
        wait_for(lambda: events() == [first, ("ModelsAdded", "b")], what="ModelsAdded while Ready")
        srv.set_models([])
        refresh()
        providers.wait_reason("p", "NoModels")
        wait_for(lambda: len(events()) == 3, what="the drop to none")
        (gone,) = [e for e in events() if e[0] == "BecameUnready"]
        assert gone[1].endswith("; models removed: a, b")
        srv.set_models(["a"])
        refresh()
        providers.wait_reason("p", "Ready")
        wait_for(lambda: events().count(first) == 2 and len(events()) == 4,
                 what="recovery naming the model")
