"""The chart's other shape on the same node: the relay embedded in each operator pod
(``relay.mode=embedded``, for small installs), under the restricted Pod Security Standard; apps
call it by the same Service name."""

from __future__ import annotations

import pytest

from chatprovider_tools.node import NodeCluster
from tests.conftest import HelmRunner

from .conftest import (
    NAMESPACE,
    TEAM,
    Team,
    assert_served,
    helm_install_args,
    pods_report,
    report,
    restricted_namespace,
    wait_until,
)

RELEASE = "chatprovider-operator"
#: An install waits up to 150 s for its rollout, an uninstall up to 120 s.
pytestmark = pytest.mark.timeout(400)


def test_the_relay_embedded_in_the_operator_pods_serves_apps(
        node: NodeCluster, image: str, team: Team, helm: HelmRunner) -> None:
    restricted_namespace(node, NAMESPACE)
    installed = helm("install", *helm_install_args(image, RELEASE, NAMESPACE,
                                                   "relay.mode=embedded"),
                     "--wait", "--timeout", "150s", kubeconfig=node.kubeconfig, timeout=180,
                     check=False)
    try:
        assert installed.returncode == 0, (f"helm install: {installed.stderr}\n"
                                           + pods_report(node, NAMESPACE))
        assert "violate PodSecurity" not in installed.stdout + installed.stderr
        pods = node.kubectl_json("get", "pods", "-n", NAMESPACE)["items"]
        assert sorted(p["metadata"]["labels"]["app.kubernetes.io/component"]
                      for p in pods) == ["operator", "operator"]  # no relay Deployment
        assert all(s["ready"] and s["restartCount"] == 0
                   for p in pods for s in p["status"]["containerStatuses"]), pods_report(
                       node, NAMESPACE)
        # this release's operator checks a provider registered now
        team.register("embedded")
        wait_until(lambda: team.provider_ready("embedded"), "the provider to be Ready",
                   timeout=120, why=report(node))
        team.register()  # (kept from an earlier release, or new when this module runs alone)
        wait_until(team.provider_ready, "the provider vllm to be Ready", timeout=120,
                   why=report(node))
        assert_served(team.call_relay("embedded-client", "app"))
        node.kubectl("delete", "chatprovider", "embedded", "-n", TEAM, timeout=60)
    finally:
        helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s",
             kubeconfig=node.kubeconfig, check=False, timeout=150)
    wait_until(lambda: not node.kubectl_json("get", "pods", "-n", NAMESPACE)["items"],
               "the release's pods to be gone", timeout=90, why=report(node))
