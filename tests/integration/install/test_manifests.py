"""manifests/ is the chart rendered with its default values: fresh, and accepted by the API
server as a kustomization."""

from __future__ import annotations

import subprocess
import sys

import yaml
from kubernetes import client as k8s_client

from .conftest import ROOT

SCRIPT = ROOT / "scripts" / "render_manifests.py"
MANIFESTS = ROOT / "manifests"


def test_the_committed_manifests_are_up_to_date(helm_bin, tmp_path) -> None:
    env = {"HELM": str(helm_bin), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, (
        "manifests/ is stale: run `python scripts/render_manifests.py` and commit the result\n"
        + proc.stderr)
    # and --check notices a change
    out = tmp_path / "manifests"
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], check=True, env=env,
                   capture_output=True, timeout=120)
    (out / "rbac.yaml").write_text((out / "rbac.yaml").read_text().replace("watch", "delete"))
    (out / "extra.yaml").write_text("{}\n")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1
    assert "rbac.yaml is stale" in proc.stderr and "extra.yaml is stale" in proc.stderr


def test_the_kustomization_lists_every_file() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    files = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert kustomization["resources"][0] == "namespace.yaml"


def test_the_api_server_accepts_the_kustomization(kubectl, k8s, chatprovider_crd) -> None:
    built = kubectl("kustomize", str(MANIFESTS)).stdout
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(built) if d)
    assert kinds == sorted(["Namespace", *["CustomResourceDefinition"] * 3,
                            *["ServiceAccount"] * 2, *["ClusterRole"] * 5,
                            *["ClusterRoleBinding"] * 3, "Role", "RoleBinding", "Service",
                            *["Deployment"] * 2, *["PodDisruptionBudget"] * 2,
                            # the references policy; the relay's patches (passive health)
                            *["ValidatingAdmissionPolicy"] * 2,
                            *["ValidatingAdmissionPolicyBinding"] * 2])
    # a server-side dry run cannot create the namespace its objects go into: create it first
    try:
        k8s_client.CoreV1Api(k8s).create_namespace({"metadata": {
            "name": "chatprovider-system",
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    except k8s_client.ApiException as exc:
        assert exc.status == 409
    proc = kubectl("apply", "--dry-run=server", "--validate=strict", "-k", str(MANIFESTS))
    assert "deployment.apps/chatprovider-operator created (server dry run)" in proc.stdout
