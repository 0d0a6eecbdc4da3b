"""The reliability suite: faults, attacks and bad input, with measured figures.

Every test records what it measured with the ``figure`` fixture; the figures are printed at the
end of the run (a "reliability figures" section) and written to
``$CHATPROVIDER_CACHE/reliability-figures.json`` (default ``~/.cache/chatprovider``), from which
docs/reliability.md quotes them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from chatprovider_tools.controlplane import ControlPlane
from chatprovider_tools.controlplane.plane import write_kubeconfig
from tests.integration.controller.conftest import Providers

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Figure:
    test: str
    scenario: str
    measured: str


_FIGURES: list[Figure] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path)).resolve()
        if HERE in path.parents:
            item.add_marker(pytest.mark.reliability)
            if path.name != "test_properties.py":
                item.add_marker(pytest.mark.integration)  # needs the control plane


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    for f in _FIGURES:
        terminalreporter.write_line(f"{f.scenario}: {f.measured}   [{f.test}]")
    cache = Path(os.environ.get("CHATPROVIDER_CACHE", Path.home() / ".cache/chatprovider"))
    try:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "reliability-figures.json").write_text(
            json.dumps([asdict(f) for f in _FIGURES], indent=1))
    except OSError:
        pass


FigureRecorder = Callable[[str, str], None]


@pytest.fixture()
def figure(request: pytest.FixtureRequest) -> FigureRecorder:
    """``figure("scenario", "measured value")``: printed now and in the end-of-run summary."""

    def record(scenario: str, measured: str) -> None:
        print(f"\n[reliability] {scenario}: {measured}")
        _FIGURES.append(Figure(request.node.name, scenario, measured))

    return record


@pytest.fixture(scope="session")
def crd(kubectl) -> Path:
    """The generated CRDs installed and served (as tests/integration/conftest.py does)."""
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=chatprovider-tests",
            "-f", str(CRD_DIR))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRD_DIR))
    deadline = time.monotonic() + 30
    while kubectl("get", "chatproviders", "-A", check=False).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail("chatproviders are not served", pytrace=False)
        time.sleep(0.2)
    return CRD_DIR


@pytest.fixture()
def providers(k8s, namespace, crd) -> Providers:
    return Providers(k8s, namespace)


# -- a control plane with an audit log and the chart's RBAC ---------------------------------------
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    resources: [{group: "", resources: ["secrets", "configmaps"]}]
  - level: Metadata  # who wrote a status, and when (two operators never write at once)
    verbs: ["create", "update", "patch"]
    resources: [{group: "ai.chatprovider.dev", resources: ["chatproviders/status"]}]
  - level: Metadata
    verbs: ["list"]
    resources: [{group: "ai.chatprovider.dev", resources: ["chatproviders"]}]
  - level: Metadata
    verbs: ["create", "update"]
    resources: [{group: "coordination.k8s.io", resources: ["leases"]}]
  - level: None
"""
#: What the secured cluster takes from the chart: its RBAC, the CRD and the admission policy.
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
              "CustomResourceDefinition", "ValidatingAdmissionPolicy",
              "ValidatingAdmissionPolicyBinding"}
RELEASE_NS = "chatprovider-system"
#: The chart's Lease: its Role lets the operator get and update this one only, in RELEASE_NS.
CHART_LEASE = "chatprovider-operator"
#: What an operator running as the chart's ServiceAccount needs to lead (``ChatproviderProcess``
#: ``lease=CHART_LEASE, extra=CHART_LEASE_FLAGS``).
CHART_LEASE_FLAGS = (f"--lease-namespace={RELEASE_NS}",)


class AuditedPlane(ControlPlane):
    """A ControlPlane whose API server writes every Secret and ConfigMap request, every
    ChatProvider status write and list, and every Lease write to an audit log (JSON lines), so
    a test can prove who read or wrote what, and when."""

    def _apiserver_argv(self, tokens: Path) -> list[str]:
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        self.audit_log = self.workdir / "audit.log"
        return [*super()._apiserver_argv(tokens), f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}", "--audit-log-format=json"]

    def audit(self) -> list[dict]:
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines() if line]


def render_chart() -> list[dict]:
    """``helm template`` of charts/chatprovider-operator with a separate relay Deployment."""
    helm = subprocess.run(["bash", str(ROOT / "scripts/install-helm.sh")], capture_output=True,
                          text=True, check=True).stdout.strip()
    out = subprocess.run(
        [helm, "template", "cp", str(ROOT / "charts/chatprovider-operator"),
         "--namespace", RELEASE_NS, "--set", "relay.mode=separate"],
        capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@dataclass
class SecuredCluster:
    plane: AuditedPlane
    api: Any  # kubernetes ApiClient as admin
    kubeconfigs: dict[str, Path]  # "operator", "relay": kubeconfigs of the chart's SAs
    users: dict[str, str]  # "operator", "relay": their user names


@pytest.fixture(scope="session")
def secured_cluster(control_plane, tmp_path_factory) -> Iterator[SecuredCluster]:
    """A dedicated audited control plane with the CRD and the chart's ServiceAccounts and RBAC
    (``helm template``), and kubeconfigs that authenticate as those ServiceAccounts."""
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    plane = AuditedPlane(control_plane.binaries).start()
    try:
        api = k8s_config.new_client_from_config(config_file=str(plane.kubeconfig))
        core = k8s_client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": RELEASE_NS}})
        docs = [d for d in render_chart() if d["kind"] in RBAC_KINDS]
        kubectl = plane.binaries.kubectl
        subprocess.run([str(kubectl), f"--kubeconfig={plane.kubeconfig}", "apply",
                        "--server-side", "-f", "-"], input=yaml.safe_dump_all(docs), text=True,
                       capture_output=True, check=True)
        subprocess.run([str(kubectl), f"--kubeconfig={plane.kubeconfig}", "wait",
                        "--for=condition=Established", "--timeout=60s", "-f", str(CRD_DIR)],
                       capture_output=True, check=True)
        accounts = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d["metadata"]["name"]
                    for d in docs if d["kind"] == "ServiceAccount"}
        base = tmp_path_factory.mktemp("secured")
        kubeconfigs, users = {}, {}
        for component, sa in accounts.items():
            token = core.create_namespaced_service_account_token(
                sa, RELEASE_NS, {"spec": {"expirationSeconds": 7200}}).status.token
            kubeconfigs[component] = write_kubeconfig(base / component, plane.server,
                                                      plane.creds.ca_cert, token, component)
            users[component] = f"system:serviceaccount:{RELEASE_NS}:{sa}"
        yield SecuredCluster(plane, api, kubeconfigs, users)
    finally:
        plane.stop()
