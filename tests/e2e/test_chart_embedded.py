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
    helm_install,
    helm_uninstall,
    pods_report,
    report,
    wait_until,
)

#: An install waits up to 150 s for its rollout, an uninstall up to 120 s.
pytestmark = pytest.mark.timeout(400)


def test_the_relay_embedded_in_the_operator_pods_serves_apps(
        node: NodeCluster, image: str, team: Team, helm: HelmRunner) -> None:
    try:
        assert "violate PodSecurity" not in helm_install(helm, node, image,
                                                         "relay.mode=embedded")
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
        helm_uninstall(helm, node, check=False)
    wait_until(lambda: not node.kubectl_json("get", "pods", "-n", NAMESPACE)["items"],
               "the release's pods to be gone", timeout=90, why=report(node))
