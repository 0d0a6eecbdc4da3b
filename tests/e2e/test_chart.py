"""The chart with its defaults on a real node, as a platform team installs it: into a namespace
that enforces the restricted Pod Security Standard, the operator (2 replicas, leader election)
and the relay (separate, 2 replicas) running from the project's image; providers whose servers
are pods (the dev server, and llama-server with a real model); apps calling the relay's Service
by its DNS name with a projected token."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import httpx
import openai
import pytest

from chatprovider_tools.node import NodeCluster
from tests.conftest import HelmRunner

from .conftest import (
    GEMMA,
    MODEL,
    NAMESPACE,
    RELEASE,
    TEAM,
    Team,
    assert_served,
    helm_install,
    helm_install_args,
    helm_uninstall,
    probe_results,
    relay_ip,
    report,
    wait_until,
)

#: Longer than a test's default: an install waits up to 150 s for its rollout.
pytestmark = pytest.mark.timeout(400)


@dataclass(frozen=True)
class Install:
    team: Team
    helm_output: str

    @property
    def node(self) -> NodeCluster:
        return self.team.node


@pytest.fixture(scope="module")
def install(node: NodeCluster, image: str, team: Team, helm: HelmRunner) -> Iterator[Install]:
    output = helm_install(helm, node, image)
    team.register()
    team.register("gemma", server="gemma")
    for name in ("vllm", "gemma"):
        wait_until(partial(team.provider_ready, name), f"the provider {name} to be Ready",
                   timeout=120, why=report(node))
    try:
        yield Install(team, output)
    finally:
        helm_uninstall(helm, node, check=False)


def test_the_chart_runs_under_the_restricted_pod_security_standard(install: Install) -> None:
    node = install.node
    assert "violate PodSecurity" not in install.helm_output  # not even a warning
    pods = node.kubectl_json("get", "pods", "-n", NAMESPACE)["items"]
    ready = {p["metadata"]["name"]: all(s["ready"] for s in p["status"]["containerStatuses"])
             for p in pods}
    components = sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods)
    assert components == ["operator", "operator", "relay", "relay"], ready
    assert all(ready.values()), ready
    for pod in pods:
        [container] = pod["status"]["containerStatuses"]
        assert container["restartCount"] == 0, (pod["metadata"]["name"], container)
    # every pod's liveness probe has run and never failed (a wrong path or port would restart
    # the pod later); each readiness probe succeeded
    names = {p["metadata"]["name"] for p in pods}
    probed = wait_until(lambda: (r := probe_results(node, NAMESPACE)) and all(
        (n, "Liveness") in r for n in names) and r,
        "every pod's liveness probe to run", timeout=90, why=report(node))
    assert not [key for key, counts in probed.items()
                if key[1] == "Liveness" and counts.get("failed")], probed
    assert all(counts.get("successful") for key, counts in probed.items()
               if key[1] == "Readiness"), probed  # (the relay's; the operator has none)
    # the processes really run as the image's numeric user, on a read-only root filesystem
    relay = next(p["metadata"]["name"] for p in pods
                 if p["metadata"]["labels"]["app.kubernetes.io/component"] == "relay")
    probe = node.kubectl("exec", relay, "-n", NAMESPACE, "--", "sh", "-c",
                         "id -u; touch /opt/x 2>/dev/null || echo read-only")
    assert probe.stdout.split() == ["65532", "read-only"], probe.stdout


def test_an_app_pod_calls_the_relay_by_its_service_name(install: Install) -> None:
    assert_served(install.team.call_relay("app-client", "app"))


def test_an_app_pod_calls_a_real_model_with_the_openai_sdk_and_curl(install: Install) -> None:
    seen = install.team.call_gemma_with_sdk_and_curl("sdk-client", "app")
    assert {MODEL, GEMMA} <= set(seen["models"]), seen
    # llama-server generated the answer (Gemma 3 270M on this CPU), and streamed one
    assert seen["chat_tokens"] > 0 and seen["chat_finish"] in ("stop", "length"), seen
    assert seen["stream_finish"] and seen["stream_tokens"][-1] > 0, seen
    code, body, stderr = seen["curl"]
    assert code == "200", (body, stderr)
    assert json.loads(body)["choices"][0]["finish_reason"] in ("stop", "length"), body


def test_a_service_account_without_use_is_refused(install: Install) -> None:
    seen = install.team.call_relay("stranger-client", "stranger")
    status, models = seen["models"]
    assert status == 200 and json.loads(models)["data"] == []  # it sees no provider
    status, answer = seen["chat"]
    assert status == 403, answer
    assert json.loads(answer)["error"]["code"] == "provider_forbidden"


def test_the_openai_sdk_and_curl_reach_the_relay_through_its_cluster_ip(
        install: Install) -> None:
    base = f"http://{relay_ip(install.node)}:8080"
    token = install.team.token("app")
    # kube-proxy writes a new Service's rules about a second after its endpoints appear
    wait_until(lambda: _answers(f"{base}/readyz"), "the relay's ClusterIP to answer")
    sdk = openai.OpenAI(base_url=f"{base}/v1", api_key=token, max_retries=0, timeout=30)
    assert MODEL in {m.id for m in sdk.models.list()}
    chat = sdk.chat.completions.create(model=MODEL, max_tokens=8,
                                       messages=[{"role": "user", "content": "Hi"}])
    assert chat.choices[0].message.content
    chunks = list(sdk.chat.completions.create(model=MODEL, max_tokens=8, stream=True,
                                              messages=[{"role": "user", "content": "Hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    curl = subprocess.run(
        ["curl", "-sS", "-m", "30", "-o", "/dev/null", "-w", "%{http_code}",
         f"{base}/v1/chat/completions", "-H", f"Authorization: Bearer {token}",
         "-H", "Content-Type: application/json",
         "-d", json.dumps({"model": MODEL, "max_tokens": 4,
                           "messages": [{"role": "user", "content": "Hi"}]})],
        capture_output=True, text=True, timeout=60)
    assert curl.stdout == "200", curl.stderr
    # a token for the API server (no relay audience) is refused
    api_token = install.node.kubectl("create", "token", "app", "-n", TEAM).stdout.strip()
    refused = httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {api_token}"})
    assert refused.status_code == 401


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_helm_upgrade_under_steady_load_fails_no_request(install: Install,
                                                         helm: HelmRunner) -> None:
    node = install.node
    base = f"http://{relay_ip(install.node)}:8080"
    token = install.team.token("app")
    wait_until(lambda: _answers(f"{base}/readyz"), "the relay's ClusterIP to answer")
    before = _pod_names(node, "relay")
    outcomes: list[int | str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=base, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            while not stop.is_set():
                try:
                    outcomes.append(client.post("/v1/chat/completions", json={
                        "model": MODEL, "max_tokens": 4,
                        "messages": [{"role": "user", "content": "Hi"}]}).status_code)
                except httpx.HTTPError as exc:
                    outcomes.append(type(exc).__name__)

    workers = [threading.Thread(target=load) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: len(outcomes) >= 20, "the load to run")
        # changed values: every relay and operator pod is replaced, one at a time
        helm("upgrade", *helm_install_args(install.team.image, RELEASE, NAMESPACE,
                                           "relay.tokenCacheTtlSeconds=20",
                                           "logFormat=json"),
             "--reuse-values", "--wait", "--timeout", "150s", kubeconfig=node.kubeconfig,
             timeout=180)
        after = _pod_names(node, "relay")
        served = len(outcomes)
        wait_until(lambda: len(outcomes) >= served + 20, "the load to go on after the upgrade")
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert not before & after, (before, after)  # every relay pod was replaced
    failed = [o for o in outcomes if o != 200]
    print(f"\n[e2e] helm upgrade under load: {len(outcomes)} requests, {len(failed)} failed "
          f"({sorted(set(map(str, failed)))}); relay pods {sorted(before)} -> {sorted(after)}")
    assert not failed


def _pod_names(node: NodeCluster, component: str) -> set[str]:
    pods = node.kubectl_json("get", "pods", "-n", NAMESPACE, "-l",
                             f"app.kubernetes.io/component={component}")["items"]
    return {p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")}


def _holder(node: NodeCluster) -> str | None:
    lease = node.kubectl("get", "lease", RELEASE, "-n", NAMESPACE, "-o",
                         "jsonpath={.spec.holderIdentity}", check=False)
    return lease.stdout.strip() or None


def test_killing_the_leader_pod_hands_the_work_to_another_replica(install: Install) -> None:
    node = install.node
    operators = _pod_names(node, "operator")
    leader = wait_until(lambda: (h := _holder(node)) in operators and h,
                        "a running operator pod to hold the Lease", why=report(node))
    node.kubectl("delete", "pod", leader, "-n", NAMESPACE, "--grace-period=0", "--force")
    # a provider registered after the kill is checked by the replica that takes over
    install.team.register("after-the-kill")
    wait_until(lambda: install.team.provider_ready("after-the-kill"),
               "the new provider to be Ready", timeout=120, why=report(node))
    # the standby, or the pod that replaced the killed one: whichever first saw the Lease
    # expire (both were seen to win)
    holder = _holder(node)
    assert holder != leader and holder in _pod_names(node, "operator"), (leader, holder)
    node.kubectl("delete", "chatprovider", "after-the-kill", "-n", TEAM)


def test_uninstall_keeps_the_crds_and_leaves_no_pod(install: Install, helm: HelmRunner) -> None:
    node = install.node
    helm_uninstall(helm, node)
    wait_until(lambda: not node.kubectl_json("get", "pods", "-n", NAMESPACE)["items"],
               "the release's pods to be gone", timeout=90, why=report(node))
    crds = {c["metadata"]["name"] for c in node.kubectl_json("get", "crd")["items"]}
    assert "chatproviders.ai.chatprovider.dev" in crds
    # the registration outlives the release (delete removes only what was asked)
    assert node.kubectl_json("get", "chatprovider", "vllm", "-n", TEAM)["metadata"]["name"]
