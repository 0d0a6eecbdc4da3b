"""The plain manifests/ (the chart rendered with its defaults), applied with kubectl the way a
GitOps pipeline applies them, on the same node: the product runs and serves, with the image
they name (the project's, tagged so in the node's containerd)."""

from __future__ import annotations

import yaml

from chatprovider_tools.node import NodeCluster
from tests.conftest import ROOT

from .conftest import NAMESPACE, Team, assert_served, report, rollout, wait_until

MANIFESTS = ROOT / "manifests"


def test_the_plain_manifests_run_and_serve(node: NodeCluster, image: str, team: Team) -> None:
    deployment = yaml.safe_load((MANIFESTS / "operator-deployment.yaml").read_text())
    [named] = {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    node.ctr("images", "tag", "--force", image, named)  # (IfNotPresent: not pulled)
    node.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(MANIFESTS),
                 timeout=120)
    labels = node.kubectl_json("get", "namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    rollout(node, NAMESPACE)
    pods = node.kubectl_json("get", "pods", "-n", NAMESPACE)["items"]
    assert sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods) == [
        "operator", "operator", "relay", "relay"]
    team.register()  # (kept from the chart's tests, or new when this module runs alone)
    wait_until(team.provider_ready, "the provider to be Ready", why=report(node))
    assert_served(team.call_relay("manifests-client", "app"))
