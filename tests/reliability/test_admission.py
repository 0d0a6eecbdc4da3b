"""No confused deputy: a ChatProvider may only reference Secrets and ConfigMaps its author may
read, checked by the API server at admission (the chart's ValidatingAdmissionPolicy).

On the audited control plane with the chart's RBAC and policy (``secured_cluster``), with the
operator running as the chart's ServiceAccount: subjects bound to the chart's
``chatprovider-editor`` role try to point a provider at a server of theirs with a Secret they
cannot read; the API server refuses, with a message naming the field and the missing
permission, and the attacker's server receives nothing. Subjects that may read the Secret, and a
GitOps-style ServiceAccount that applies its own Secrets, pass. The operator's status writes
pass as well (the provider becomes Ready).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
import yaml
from kubernetes import client as k8s_client

from chatprovider_tools.controlplane.plane import write_kubeconfig
from chatprovider_tools.devserver import DevServer
from tests.integration.controller.conftest import Providers

from .conftest import CHART_LEASE, CHART_LEASE_FLAGS, SecuredCluster
from .harness import ChatproviderProcess

CANARY = "sk-canary-admission-" + uuid.uuid4().hex
OTHER = "sk-other-" + uuid.uuid4().hex
CA_PEM = trustme.CA().cert_pem.bytes().decode()


@dataclass
class Tenancy:
    ns: str
    providers: Providers
    kubectl: Path
    kubeconfigs: dict[str, Path]
    users: dict[str, str]

    def apply(self, who: str, doc: dict) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfigs[who]}", "apply", "-n", self.ns,
             "-f", "-"], input=yaml.safe_dump(doc), capture_output=True, text=True, timeout=60)

    def patch(self, who: str, name: str, spec: dict) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfigs[who]}", "patch", "-n", self.ns,
             "chatprovider", name, "--type=merge", "-p", yaml.safe_dump({"spec": spec})],
            capture_output=True, text=True, timeout=60)


def provider(name: str, spec: dict) -> dict:
    return {"apiVersion": "ai.chatprovider.dev/v1alpha1", "kind": "ChatProvider",
            "metadata": {"name": name}, "spec": spec}


def refused(proc: subprocess.CompletedProcess[str], field: str, kind: str, name: str,
            user: str) -> None:
    assert proc.returncode != 0, f"accepted: {proc.stdout}"
    message = proc.stderr
    assert "denied request" in message and field in message, message
    assert f'may not get {kind} "{name}"' in message, message
    assert user in message, message


@pytest.fixture()
def tenancy(secured_cluster: SecuredCluster, tmp_path: Path) -> Iterator[Tenancy]:
    """A namespace with a Secret holding the canary key, a second Secret, a CA in a Secret and
    a ConfigMap, and three subjects: ``editor`` (chatprovider-editor only), ``reader`` (editor,
    and get on the key Secret) and ``gitops`` (editor, and managing Secrets, as a GitOps
    applier does)."""
    api = secured_cluster.api
    core, rbac = k8s_client.CoreV1Api(api), k8s_client.RbacAuthorizationV1Api(api)
    ns = f"adm-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": ns}})
    providers = Providers(api, ns)
    providers.put_secret("key", {"apiKey": CANARY})
    providers.put_secret("other-key", {"apiKey": OTHER})
    providers.put_secret("ca-secret", {"ca.crt": CA_PEM})
    providers.put_configmap("ca", {"ca.crt": CA_PEM})
    rules = {
        "reader": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["key"],
                    "verbs": ["get"]}],
        "gitops": [{"apiGroups": [""], "resources": ["secrets"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch"]}],
    }
    kubeconfigs, users = {}, {}
    for who in ("editor", "reader", "gitops"):
        core.create_namespaced_service_account(ns, {"metadata": {"name": who}})
        rbac.create_namespaced_role_binding(ns, {
            "metadata": {"name": f"{who}-edits-providers"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "chatprovider-editor"},
            "subjects": [{"kind": "ServiceAccount", "name": who, "namespace": ns}]})
        if who in rules:
            rbac.create_namespaced_role(ns, {"metadata": {"name": who}, "rules": rules[who]})
            rbac.create_namespaced_role_binding(ns, {
                "metadata": {"name": who},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": who},
                "subjects": [{"kind": "ServiceAccount", "name": who, "namespace": ns}]})
        token = core.create_namespaced_service_account_token(
            who, ns, {"spec": {"expirationSeconds": 3600}}).status.token
        plane = secured_cluster.plane
        kubeconfigs[who] = write_kubeconfig(tmp_path / who, plane.server, plane.creds.ca_cert,
                                            token, who)
        users[who] = f"system:serviceaccount:{ns}:{who}"
    kubeconfigs["admin"] = secured_cluster.plane.kubeconfig
    yield Tenancy(ns, providers, secured_cluster.plane.binaries.kubectl, kubeconfigs, users)
    # The secured cluster is shared: leave no provider for a later operator to check (there is
    # no namespace controller to delete them with the namespace).
    k8s_client.CustomObjectsApi(api).delete_collection_namespaced_custom_object(
        "ai.chatprovider.dev", "v1alpha1", ns, "chatproviders")


def test_an_editor_cannot_send_a_secret_it_cannot_read_to_its_own_server(
        secured_cluster, tenancy, tmp_path, figure) -> None:
    t = tenancy
    operator = ChatproviderProcess(secured_cluster.kubeconfigs["operator"],
                                   tmp_path / "operator.log", lease=CHART_LEASE,
                                   extra=CHART_LEASE_FLAGS)
    with DevServer("vllm", models=["m"], api_keys={CANARY}) as good, \
            DevServer("generic", models=["m"]) as attacker:
        operator.start()
        try:
            # Creating: every kind of reference, each refused with the field and permission.
            key_ref = t.apply("editor", provider("steal", {
                "endpoint": attacker.url, "apiKeySecretRef": {"name": "key"}}))
            refused(key_ref, "spec.apiKeySecretRef.name", "Secret", "key", t.users["editor"])
            ca_secret = t.apply("editor", provider("steal-ca", {
                "endpoint": attacker.url,
                "tls": {"caBundle": {"secretKeyRef": {"name": "ca-secret", "key": "ca.crt"}}}}))
            refused(ca_secret, "spec.tls.caBundle.secretKeyRef.name", "Secret", "ca-secret",
                    t.users["editor"])
            ca_map = t.apply("editor", provider("steal-cm", {
                "endpoint": attacker.url,
                "tls": {"caBundle": {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}}}}))
            refused(ca_map, "spec.tls.caBundle.configMapKeyRef.name", "ConfigMap", "ca",
                    t.users["editor"])
            # A provider with no reference is the editor's to create.
            plain = t.apply("editor", provider("plain", {"endpoint": attacker.url}))
            assert plain.returncode == 0, plain.stderr

            # Updating a provider the admin set up with the key: the operator (as the chart's
            # ServiceAccount) checks it and writes its status under the policy.
            made = t.apply("admin", provider("shared", {
                "endpoint": good.url, "apiKeySecretRef": {"name": "key"}}))
            assert made.returncode == 0, made.stderr
            t.providers.wait_reason("shared", "Ready", timeout=30)
            assert CANARY in {r.api_key for r in good.journal.requests}  # positive control
            moved = t.patch("editor", "shared", {"endpoint": attacker.url})
            refused(moved, "spec.endpoint, spec.proxy or spec.tls", "Secret", "key",
                    t.users["editor"])
            proxied = t.patch("editor", "shared", {"proxy": {"url": attacker.base_url}})
            refused(proxied, "spec.endpoint, spec.proxy or spec.tls", "Secret", "key",
                    t.users["editor"])
            swapped = t.patch("editor", "shared", {"apiKeySecretRef": {"name": "other-key"}})
            refused(swapped, "spec.apiKeySecretRef.name", "Secret", "other-key",
                    t.users["editor"])
            described = t.patch("editor", "shared", {"description": "edited by the team"})
            assert described.returncode == 0, described.stderr  # where the key goes is unchanged

            # Whoever may read the key may send it where they like; so may a GitOps applier.
            reader = t.apply("reader", provider("readers-own", {
                "endpoint": good.url, "apiKeySecretRef": {"name": "key"}}))
            assert reader.returncode == 0, reader.stderr
            gitops_secret = {"apiVersion": "v1", "kind": "Secret",
                             "metadata": {"name": "gitops-key"},
                             "stringData": {"apiKey": CANARY}}
            assert t.apply("gitops", gitops_secret).returncode == 0
            gitops = t.apply("gitops", provider("from-git", {
                "endpoint": good.url, "apiKeySecretRef": {"name": "gitops-key"}}))
            assert gitops.returncode == 0, gitops.stderr
            t.providers.wait_reason("readers-own", "Ready", timeout=30)
            t.providers.wait_reason("from-git", "Ready", timeout=30)
            t.providers.wait_reason("plain", "Ready", timeout=30)
        finally:
            operator.stop()
        sent_to_attacker = attacker.journal.requests
    assert sent_to_attacker, "the editor's plain provider was checked (positive control)"
    keys = {r.api_key for r in sent_to_attacker}
    assert keys == {None}, "the attacker's server received a key"
    assert all(CANARY not in r.raw.decode(errors="replace") for r in sent_to_attacker)
    figure("Confused deputy: an editor referencing a Secret it cannot read",
           "3 references refused at creation (key, CA Secret, CA ConfigMap) and 3 changes of a "
           "shared provider (endpoint, proxy, key Secret), each naming the field and the "
           "missing get; a description change, a Secret reader's and a GitOps applier's "
           f"providers accepted; the attacker's server got {len(sent_to_attacker)} requests, "
           "none with a key")


def test_with_the_opt_in_label_an_unlabelled_secret_is_never_read(
        secured_cluster, tenancy, tmp_path) -> None:
    """Defence in depth where the policy cannot run: ``--require-secret-label``."""
    t = tenancy
    operator = ChatproviderProcess(secured_cluster.kubeconfigs["operator"],
                                   tmp_path / "operator.log", lease=CHART_LEASE,
                                   extra=[*CHART_LEASE_FLAGS, "--require-secret-label"])
    with DevServer("vllm", models=["m"], api_keys={CANARY}) as up:
        operator.start()
        try:
            t.providers.create("unlabelled", {"endpoint": up.url,
                                              "apiKeySecretRef": {"name": "key"}})
            t.providers.create("missing", {"endpoint": up.url,
                                           "apiKeySecretRef": {"name": "no-such-secret"}})
            unlabelled = t.providers.wait_reason("unlabelled", "SecretNotFound", timeout=30)
            missing = t.providers.wait_reason("missing", "SecretNotFound", timeout=30)
            # the two read the same: the message tells nothing about the unlabelled Secret
            assert unlabelled["message"].replace("'key'", "X") == \
                missing["message"].replace("'no-such-secret'", "X")
            assert "ai.chatprovider.dev/provider-secret=true" in unlabelled["message"]
            assert f"namespace {t.ns!r}" in unlabelled["message"]
            assert up.journal.requests == []
            k8s_client.CoreV1Api(secured_cluster.api).patch_namespaced_secret(
                "key", t.ns, {"metadata": {"labels": {
                    "ai.chatprovider.dev/provider-secret": "true"}}})
            t.providers.wait_reason("unlabelled", "Ready", timeout=30)
        finally:
            operator.stop()
        assert {r.api_key for r in up.journal.requests} == {CANARY}
