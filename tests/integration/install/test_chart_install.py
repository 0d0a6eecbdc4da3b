"""The chart installed for real (``helm install`` against the real API server), then the operator
and the relay run here as the chart's ServiceAccounts, with exactly the chart's RBAC: a provider
with a Secret key becomes Ready, a caller bound to the chart's ``<prefix>-user`` ClusterRole chats
through the relay, and ``kubectl auth can-i`` shows what each account can and cannot do.

There is no kubelet here, so the Deployments never run pods: the processes run on this machine
with a kubeconfig holding a token minted for the chart's ServiceAccount, which is what a pod's
projected token gives them.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s_client
from tests.conftest import RELAY_AUDIENCE

from chatprovider_tools.controlplane.plane import free_port
from chatprovider_tools.devserver import DevServer

from .conftest import CHART, VENV_BIN, Process, write_values

MESSAGES = [{"role": "user", "content": "hello"}]


@dataclass
class Release:
    name: str
    namespace: str
    fullname: str
    notes: str
    seconds: float

    @property
    def operator_sa(self) -> str:
        return self.fullname

    @property
    def relay_sa(self) -> str:
        return f"{self.fullname}-relay"

    def subject(self, account: str) -> str:
        return f"system:serviceaccount:{self.namespace}:{account}"


def install(helm, kubeconfig: Path, directory: Path, name: str, values: dict[str, Any]
            ) -> Release:
    namespace = f"{name}-system-{uuid.uuid4().hex[:6]}"
    began = time.monotonic()
    proc = helm("install", name, str(CHART), "--namespace", namespace, "--create-namespace",
                "--take-ownership",  # the CRD exists already: applied by the test fixtures
                "-f", str(write_values(directory, values)), kubeconfig=kubeconfig)
    seconds = time.monotonic() - began
    print(f"\nhelm install {name}: {seconds:.1f}s")
    return Release(name, namespace, f"{name}-chatprovider-operator", proc.stdout, seconds)


@pytest.fixture(scope="module")
def release(helm, kubeconfig, chatprovider_crd, tmp_path_factory) -> Iterator[Release]:
    """The chart with default values (cluster-wide RBAC, the relay as its own Deployment, the
    operator's replicas electing a leader)."""
    rel = install(helm, kubeconfig, tmp_path_factory.mktemp("release"), "cpo", {})
    yield rel
    helm("uninstall", rel.name, "--namespace", rel.namespace, kubeconfig=kubeconfig,
         check=False)


# --- helpers --------------------------------------------------------------------------------------


def create_provider(k8s, namespace: str, name: str, upstream: DevServer, secret: str) -> None:
    k8s_client.CoreV1Api(k8s).create_namespaced_secret(namespace, {
        "metadata": {"name": secret},
        "data": {"apiKey": base64.b64encode(b"provider-key").decode()}})
    k8s_client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        "ai.chatprovider.dev", "v1alpha1", namespace, "chatproviders", {
            "apiVersion": "ai.chatprovider.dev/v1alpha1", "kind": "ChatProvider",
            "metadata": {"name": name},
            "spec": {"endpoint": upstream.url, "serverType": "vllm",
                     "apiKeySecretRef": {"name": secret}}})


def wait_ready(k8s, namespace: str, name: str, proc: Process, timeout: float = 30) -> float:
    api = k8s_client.CustomObjectsApi(k8s)
    began = time.monotonic()
    last: Any = None
    while time.monotonic() - began < timeout:
        assert proc.alive(), f"the operator exited:\n{proc.output()[-3000:]}"
        obj = api.get_namespaced_custom_object("ai.chatprovider.dev", "v1alpha1", namespace,
                                               "chatproviders", name)
        last = {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}
        if last.get("Ready", {}).get("status") == "True":
            return time.monotonic() - began
        time.sleep(0.2)
    raise AssertionError(f"{namespace}/{name} not Ready in {timeout}s: {last}\n"
                         f"{proc.output()[-3000:]}")


def run_as(processes, kubeconfig_for, mint_token, release: Release, account: str,
           argv: list[str], log: Path) -> Process:
    """Run ``chatprovider <argv>`` with a token minted for the chart's ServiceAccount."""
    token = mint_token(release.namespace, account)
    config = kubeconfig_for(token, account)
    # In a pod the chart sets POD_NAMESPACE (the Lease's namespace) from the downward API.
    lease = ["--lease-namespace", release.namespace] if argv[0] == "run" else []
    return processes([str(VENV_BIN / "chatprovider"), *argv, *lease, "--kubeconfig",
                      str(config), "--log-format", "json"], log)


def chat(port: int, token: str, model: str) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=20,
                      headers={"Authorization": f"Bearer {token}"},
                      json={"model": model, "messages": MESSAGES})


def wait_relay(port: int, proc: Process, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.alive(), f"exited:\n{proc.output()[-3000:]}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"relay not ready:\n{proc.output()[-3000:]}")


def wait_chat(port: int, token: str, model: str, proc: Process, timeout: float = 15
              ) -> httpx.Response:
    """The relay learns of the provider's Ready status through its own watch: retry the 404s
    and 503s of the moment before it does."""
    deadline = time.monotonic() + timeout
    while True:
        resp = chat(port, token, model)
        if resp.status_code == 200 or time.monotonic() > deadline:
            return resp
        time.sleep(0.2)


def assert_no_permission_errors(proc: Process) -> None:
    """No API request of the process was refused (the relay's access log of callers it
    refused itself does not count, nor the operator's report of an upstream's answer: a
    provider may be named, or be, ``unauthorized``)."""
    lines = [line for line in proc.output().splitlines()
             if '"chatprovider.relay.access"' not in line
             and not re.search(r"checked \S+( in \d+ ms)?: Ready=", line)]
    for needle in ("forbidden", "not enough permissions", " 403", "unauthorized"):
        hits = [line for line in lines if needle in line.lower()]
        assert not hits, f"{needle!r} in the log:\n" + "\n".join(hits[:10])


def can_i(kubectl, subject: str, *args: str) -> bool:
    proc = kubectl("auth", "can-i", *args, f"--as={subject}", check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), proc.stdout + proc.stderr
    return answer == "yes"


def check_matrix(kubectl, subject: str, matrix: list[tuple[bool, str]]) -> None:
    wrong = [f"{'can' if not expected else 'cannot'}: {question}"
             for expected, question in matrix
             if can_i(kubectl, subject, *question.split()) != expected]
    assert not wrong, f"{subject}:\n" + "\n".join(wrong)


# --- default install: cluster-wide, relay separate, leader election -------------------------------


def test_install_prints_how_to_start(release: Release) -> None:
    assert "kubectl create secret generic vllm-api-key" in release.notes
    assert "--clusterrole=chatprovider-user" in release.notes
    assert f"svc/{release.fullname}-relay" in release.notes


def test_operator_reconciles_with_exactly_the_charts_permissions(
        release, k8s, kubectl, namespace, mint_token, kubeconfig_for, processes,
        tmp_path) -> None:
    relay_port = free_port()
    operator = run_as(processes, kubeconfig_for, mint_token, release, release.operator_sa,
                      ["run", "--health-port", "0", "--no-relay"], tmp_path / "operator.log")
    relay = run_as(processes, kubeconfig_for, mint_token, release, release.relay_sa,
                   ["relay", "--relay-host", "127.0.0.1", "--relay-port", str(relay_port)],
                   tmp_path / "relay.log")
    with DevServer("vllm", api_keys={"provider-key"}) as upstream:
        create_provider(k8s, namespace, "vllm", upstream, "llm-key")
        seconds = wait_ready(k8s, namespace, "vllm", operator)
        print(f"provider Ready {seconds:.1f}s after creation")
        assert any(r.path == "/v1/models" and r.api_key == "provider-key"
                   for r in upstream.requests)

        # the relay, called by an app bound to the chart's chatprovider-user role
        kubectl("create", "rolebinding", "app-uses-providers", "-n", namespace,
                "--clusterrole=chatprovider-user", f"--serviceaccount={namespace}:app")
        app = mint_token(namespace, "app", audience=RELAY_AUDIENCE)
        model = f"{namespace}/vllm/{upstream.models[0]}"
        wait_relay(relay_port, relay)
        answer = wait_chat(relay_port, app, model, relay)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]
        stranger = chat(relay_port, mint_token(namespace, "stranger", audience=RELAY_AUDIENCE),
                        model)
        assert stranger.status_code == 403, stranger.text

    events = kubectl("get", "events", "-n", namespace, "-o",
                     "jsonpath={.items[*].reason}").stdout.split()
    assert "BecameReady" in events  # posted with the chart's events: create
    assert relay.stop() == 0
    assert operator.stop() == 0
    assert_no_permission_errors(operator)
    assert_no_permission_errors(relay)


def test_operator_account_can_do_only_its_job(release, kubectl, namespace) -> None:
    check_matrix(kubectl, release.subject(release.operator_sa), [
        (True, "list chatproviders.ai.chatprovider.dev --all-namespaces"),
        (True, "watch chatproviders.ai.chatprovider.dev --all-namespaces"),
        (True, f"get chatproviders.ai.chatprovider.dev -n {namespace}"),
        (True, f"patch chatproviders.ai.chatprovider.dev --subresource=status -n {namespace}"),
        (True, f"create events -n {namespace}"),
        (True, f"get secrets -n {namespace}"),
        (True, f"watch configmaps -n {namespace}"),
        (False, "create tokenreviews.authentication.k8s.io"),  # the relay is separate
        (False, "create subjectaccessreviews.authorization.k8s.io"),
        (True, "watch customresourcedefinitions.apiextensions.k8s.io"),
        # leader election: its own Lease only, in the release namespace
        (True, f"create leases.coordination.k8s.io -n {release.namespace}"),
        (True, f"get leases.coordination.k8s.io/chatprovider-operator -n {release.namespace}"),
        (True, f"update leases.coordination.k8s.io/chatprovider-operator"
               f" -n {release.namespace}"),
        (False, f"update leases.coordination.k8s.io/other -n {release.namespace}"),
        (False, f"delete leases.coordination.k8s.io/chatprovider-operator"
                f" -n {release.namespace}"),
        (False, f"create leases.coordination.k8s.io -n {namespace}"),
        (False, f"update chatproviders.ai.chatprovider.dev -n {namespace}"),
        (False, f"patch chatproviders.ai.chatprovider.dev -n {namespace}"),
        (False, f"create chatproviders.ai.chatprovider.dev -n {namespace}"),
        (False, f"delete chatproviders.ai.chatprovider.dev -n {namespace}"),
        (False, f"use chatproviders.ai.chatprovider.dev -n {namespace}"),
        (False, f"update chatproviders.ai.chatprovider.dev --subresource=status -n {namespace}"),
        (False, f"create secrets -n {namespace}"),
        (False, f"update secrets -n {namespace}"),
        (False, f"delete secrets -n {namespace}"),
        (False, f"update configmaps -n {namespace}"),
        (False, f"delete events -n {namespace}"),
        (False, f"create pods -n {namespace}"),
        (False, f"get pods -n {namespace}"),
        (False, f"create deployments.apps -n {release.namespace}"),
        (False, "list namespaces"),
        (False, "update customresourcedefinitions.apiextensions.k8s.io"),
        (False, "create clusterrolebindings.rbac.authorization.k8s.io"),
        (False, "impersonate serviceaccounts"),
        (False, f"create serviceaccounts/token -n {release.namespace}"),
    ])


def test_user_roles_grant_what_they_say(release, kubectl, namespace) -> None:
    for role, allowed in (("chatprovider-user", {"use"}),
                          ("chatprovider-viewer", {"get", "list", "watch"}),
                          ("chatprovider-editor", {"get", "list", "watch", "create", "update",
                                                   "patch", "delete"})):
        account = role.rsplit("-", 1)[-1]
        kubectl("create", "rolebinding", f"{account}-binding", "-n", namespace,
                f"--clusterrole={role}", f"--serviceaccount={namespace}:{account}")
        subject = f"system:serviceaccount:{namespace}:{account}"
        check_matrix(kubectl, subject, [
            (verb in allowed, f"{verb} chatproviders.ai.chatprovider.dev -n {namespace}")
            for verb in ("use", "get", "list", "watch", "create", "update", "patch", "delete")
        ] + [
            # quotas: read with the providers, written by whoever edits the providers
            (verb in allowed and verb != "use",
             f"{verb} chatquotas.ai.chatprovider.dev -n {namespace}")
            for verb in ("get", "list", "watch", "create", "update", "patch", "delete")
        ] + [(False, f"patch chatquotas.ai.chatprovider.dev --subresource=status -n"
                     f" {namespace}"),
             (False, f"get secrets -n {namespace}")])


# --- namespaced RBAC, separate relay --------------------------------------------------------------


@pytest.fixture()
def namespaced_release(helm, kubeconfig, chatprovider_crd, namespace, tmp_path
                       ) -> Iterator[Release]:
    prefix = f"cpb{uuid.uuid4().hex[:6]}"
    rel = install(helm, kubeconfig, tmp_path, "cpb", {
        "crds": {"install": False},  # the default release above manages it
        "userRoles": {"prefix": prefix},
        "watchNamespaces": [namespace],
        "rbac": {"namespaced": True, "resourceNames": ["llm-key"]},
        "relay": {"mode": "separate"},
    })
    rel.notes = prefix  # the user role's prefix, for the test
    yield rel
    helm("uninstall", rel.name, "--namespace", rel.namespace, kubeconfig=kubeconfig,
         check=False)


def test_namespaced_install_runs_with_no_cluster_wide_secret_access(
        namespaced_release, k8s, kubectl, namespace, mint_token, kubeconfig_for, processes,
        tmp_path) -> None:
    rel = namespaced_release
    other = f"t-{uuid.uuid4().hex[:10]}"
    k8s_client.CoreV1Api(k8s).create_namespace({"metadata": {"name": other}})
    operator = run_as(processes, kubeconfig_for, mint_token, rel, rel.operator_sa,
                      ["run", "--no-relay", "--health-port", "0", "-n", namespace],
                      tmp_path / "operator.log")
    relay_port = free_port()
    relay = run_as(processes, kubeconfig_for, mint_token, rel, rel.relay_sa,
                   ["relay", "-n", namespace, "--relay-host", "127.0.0.1",
                    "--relay-port", str(relay_port)], tmp_path / "relay.log")
    with DevServer("vllm", api_keys={"provider-key"}) as upstream:
        create_provider(k8s, namespace, "vllm", upstream, "llm-key")
        wait_ready(k8s, namespace, "vllm", operator)

        kubectl("create", "rolebinding", "app-uses-providers", "-n", namespace,
                f"--clusterrole={rel.notes}-user", f"--serviceaccount={namespace}:app")
        wait_relay(relay_port, relay)
        answer = wait_chat(relay_port, mint_token(namespace, "app", audience=RELAY_AUDIENCE),
                           f"{namespace}/vllm/{upstream.models[0]}", relay)
        assert answer.status_code == 200, answer.text
        assert upstream.requests[-1].api_key == "provider-key"  # read by the relay's account

    # a Secret it does not need, in the watched namespace and elsewhere: refused
    for ns in (namespace, other):
        k8s_client.CoreV1Api(k8s).create_namespaced_secret(ns, {
            "metadata": {"name": "not-yours"}, "stringData": {"password": "x"}})
    token = mint_token(rel.namespace, rel.operator_sa)
    as_operator = kubeconfig_for(token, "operator-b")
    for ns in (namespace, other):
        denied = kubectl("get", "secret", "not-yours", "-n", ns, check=False,
                         kubeconfig_path=as_operator)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr

    assert operator.stop() == 0
    assert relay.stop() == 0
    assert_no_permission_errors(operator)
    assert_no_permission_errors(relay)

    ns = namespace
    check_matrix(kubectl, rel.subject(rel.operator_sa), [
        (True, f"list chatproviders.ai.chatprovider.dev -n {ns}"),
        (True, f"patch chatproviders.ai.chatprovider.dev --subresource=status -n {ns}"),
        (True, f"create events -n {ns}"),
        (True, f"get secrets/llm-key -n {ns}"),
        (True, "watch namespaces"),  # kopf's namespace observer: names only
        (False, f"get secrets/not-yours -n {ns}"),
        (False, f"list secrets -n {ns}"),  # without a name selector
        (False, f"get secrets/llm-key -n {other}"),
        (False, "list chatproviders.ai.chatprovider.dev --all-namespaces"),
        (False, f"list chatproviders.ai.chatprovider.dev -n {other}"),
        (False, "list secrets --all-namespaces"),
        (False, "create tokenreviews.authentication.k8s.io"),  # no embedded relay
        (False, f"update chatproviders.ai.chatprovider.dev -n {ns}"),
    ])
    check_matrix(kubectl, rel.subject(rel.relay_sa), [
        (True, f"watch chatproviders.ai.chatprovider.dev -n {ns}"),
        (True, f"get secrets/llm-key -n {ns}"),
        (True, "create tokenreviews.authentication.k8s.io"),
        (True, "create subjectaccessreviews.authorization.k8s.io"),
        # passive health: the refresh annotation (the admission policy allows nothing else),
        # and Events of its ejections
        (True, f"patch chatproviders.ai.chatprovider.dev -n {ns}"),
        (True, f"create events -n {ns}"),
        (False, f"get secrets/not-yours -n {ns}"),
        (False, f"patch chatproviders.ai.chatprovider.dev --subresource=status -n {ns}"),
        (False, f"update chatproviders.ai.chatprovider.dev -n {ns}"),
        (False, f"delete chatproviders.ai.chatprovider.dev -n {ns}"),
        (False, f"patch chatproviders.ai.chatprovider.dev -n {other}"),
        (False, f"list chatproviders.ai.chatprovider.dev -n {other}"),
        (False, "list secrets --all-namespaces"),
        (False, f"create pods -n {ns}"),
    ])


# --- uninstall (last: it removes the module's release) --------------------------------------------


def test_uninstall_keeps_the_crd_and_removes_the_rest(release, helm, kubeconfig, kubectl) -> None:
    helm("uninstall", release.name, "--namespace", release.namespace, kubeconfig=kubeconfig)
    crd = kubectl("get", "crd", "chatproviders.ai.chatprovider.dev", "-o",
                  "jsonpath={.metadata.annotations.helm\\.sh/resource-policy}")
    assert crd.stdout == "keep"
    left = kubectl("get", "deployments,serviceaccounts,services", "-n", release.namespace,
                   "-l", f"app.kubernetes.io/instance={release.name}", "-o", "name").stdout
    assert not left.strip()
    gone = kubectl("get", "clusterrole", release.fullname, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
