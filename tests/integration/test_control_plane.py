"""The harness is a real Kubernetes API server: objects persist, RBAC and token review work."""

from __future__ import annotations

import base64
import json
import subprocess
import time

from kubernetes import client as k8s_client

from chatprovider_tools.controlplane import ControlPlane
from chatprovider_tools.controlplane.binaries import DEFAULT_K8S_VERSION


def test_version_is_the_pinned_release(kubectl) -> None:
    out = kubectl("get", "--raw", "/version").stdout
    assert json.loads(out)["gitVersion"] == DEFAULT_K8S_VERSION


def test_objects_round_trip_through_kubectl_and_python(kubectl, k8s, namespace) -> None:
    core = k8s_client.CoreV1Api(k8s)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "api-key"}, "stringData": {"apiKey": "s3cr3t"}}
    )
    kubectl("create", "serviceaccount", "app", "-n", namespace)

    secret = json.loads(kubectl("get", "secret", "api-key", "-n", namespace, "-o", "json").stdout)
    assert base64.b64decode(secret["data"]["apiKey"]) == b"s3cr3t"
    sa = core.read_namespaced_service_account("app", namespace)
    assert sa.metadata.name == "app"
    names = kubectl("get", "ns", "-o", "name").stdout.split()
    assert f"namespace/{namespace}" in names


def test_token_review_accepts_a_minted_token_and_rejects_a_forged_one(k8s, namespace, mint_token):
    token = mint_token(namespace, "caller")
    auth = k8s_client.AuthenticationV1Api(k8s)
    review = auth.create_token_review({"spec": {"token": token}})
    assert review.status.authenticated is True
    assert review.status.user.username == f"system:serviceaccount:{namespace}:caller"

    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    review = auth.create_token_review({"spec": {"token": forged}})
    assert not review.status.authenticated


def test_subject_access_review_follows_role_bindings(k8s, kubectl, namespace, mint_token) -> None:
    mint_token(namespace, "allowed")
    mint_token(namespace, "denied")
    # `kubectl create role` checks the resource through discovery; a manifest does not need the CRD.
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "use-providers"},
        "rules": [{"apiGroups": ["ai.chatprovider.dev"], "resources": ["chatproviders"],
                   "verbs": ["use"]}],
    }))
    kubectl("create", "rolebinding", "allowed-use", "-n", namespace, "--role=use-providers",
            f"--serviceaccount={namespace}:allowed")

    authz = k8s_client.AuthorizationV1Api(k8s)

    def allowed(sa: str) -> bool:
        review = authz.create_subject_access_review({"spec": {
            "user": f"system:serviceaccount:{namespace}:{sa}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            "resourceAttributes": {"group": "ai.chatprovider.dev", "resource": "chatproviders",
                                   "verb": "use", "namespace": namespace, "name": "vllm"},
        }})
        return bool(review.status.allowed)

    # the RBAC authorizer reads RoleBindings from an informer, which may lag behind their creation
    deadline = time.monotonic() + 10
    while not allowed("allowed") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert allowed("allowed")
    assert not allowed("denied")
    can_i = kubectl("auth", "can-i", "use", "chatproviders.ai.chatprovider.dev", "-n", namespace,
                    f"--as=system:serviceaccount:{namespace}:denied", check=False)
    assert can_i.stdout.strip() == "no"


def test_a_service_account_kubeconfig_is_limited_by_rbac(kubectl, namespace, mint_token,
                                                         kubeconfig_for) -> None:
    config = kubeconfig_for(mint_token(namespace, "reader"), "reader")
    denied = kubectl("get", "secrets", "-n", namespace, kubeconfig_path=config, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()


def test_stop_leaves_no_process_behind(control_plane: ControlPlane) -> None:
    with ControlPlane(control_plane.binaries) as plane:
        pids = plane.pids()
        assert plane.alive()
        assert plane.startup_seconds is not None and plane.startup_seconds < 60
    for pid in pids:
        alive = subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode == 0
        assert not alive, f"process {pid} survived ControlPlane.stop()"
