"""Shared fixtures: a real control plane (etcd + kube-apiserver) per session, namespaces, kubectl.

Under ``CI=true`` missing binaries or a control plane that does not start are test errors with a
clear message; elsewhere too (a skipped integration test proves nothing), unless the run
deselects integration tests with ``-m 'not integration'``.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from hypothesis import settings as hypothesis_settings
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from chatprovider.settings import DEFAULT_TOKEN_AUDIENCE
from chatprovider_tools.controlplane import BinariesNotFound, ControlPlane, find_binaries
from chatprovider_tools.controlplane.plane import write_kubeconfig

ROOT = Path(__file__).resolve().parent.parent
#: The audience of the tokens callers present to the relay (its default setting).
RELAY_AUDIENCE = DEFAULT_TOKEN_AUDIENCE

pytest_plugins = ["tests.realupstreams"]

#: Property tests are derandomized, so that a run is repeatable (a failure found is the same on
#: every machine), with 50 examples unless a test asks for more (the reliability tier does).
hypothesis_settings.register_profile("chatprovider", derandomize=True, deadline=None,
                                     max_examples=50)
hypothesis_settings.load_profile("chatprovider")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path) or "tests\\integration" in str(item.path):
            item.add_marker(pytest.mark.integration)
        elif "tests/e2e" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    try:
        binaries = find_binaries()
    except BinariesNotFound as exc:
        pytest.fail(str(exc), pytrace=False)
    plane = ControlPlane(binaries)
    plane.start()
    print(f"\ncontrol plane ready in {plane.startup_seconds:.2f}s at {plane.server}")
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def kubectl_path(control_plane: ControlPlane) -> Path:
    return control_plane.binaries.kubectl


@pytest.fixture(scope="session")
def k8s(kubeconfig: Path) -> k8s_client.ApiClient:
    """An official-client ApiClient authenticated as the admin (system:masters)."""
    return k8s_config.new_client_from_config(config_file=str(kubeconfig))


KubectlRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path, kubectl_path: Path) -> KubectlRunner:
    """Run kubectl against the control plane: ``kubectl("get", "ns", check=True, input=...)``."""

    def run(*args: str, check: bool = True, input: str | None = None,
            kubeconfig_path: Path | None = None) -> subprocess.CompletedProcess[str]:
        argv = [str(kubectl_path), f"--kubeconfig={kubeconfig_path or kubeconfig}", *args]
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        return proc

    return run


@pytest.fixture()
def namespace(k8s: k8s_client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test (envtest has no namespace controller: it is not reaped)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    k8s_client.CoreV1Api(k8s).create_namespace({"metadata": {"name": name}})
    yield name


TokenMinter = Callable[..., str]


@pytest.fixture(scope="session")
def mint_token(k8s: k8s_client.ApiClient) -> TokenMinter:
    """Create the ServiceAccount if needed and return a fresh bound token for it."""
    core = k8s_client.CoreV1Api(k8s)

    def mint(namespace: str, name: str, seconds: int = 3600, audience: str | None = None) -> str:
        """``audience``: the token's audience (the relay's is RELAY_AUDIENCE); None: the API
        server's own (for kubeconfigs)."""
        try:
            core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
        except k8s_client.ApiException as exc:
            if exc.status != 409:
                raise
        spec: dict[str, object] = {"expirationSeconds": seconds}
        if audience is not None:
            spec["audiences"] = [audience]
        req = core.create_namespaced_service_account_token(name, namespace, {"spec": spec})
        return str(req.status.token)

    return mint


@pytest.fixture(scope="session")
def kubeconfig_for(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
                   ) -> Callable[[str, str], Path]:
    """A kubeconfig that authenticates with ``token`` (e.g. a minted ServiceAccount token)."""
    base = tmp_path_factory.mktemp("kubeconfigs")

    def make(token: str, user: str) -> Path:
        return write_kubeconfig(base / f"{user}-{uuid.uuid4().hex[:6]}", control_plane.server,
                                control_plane.creds.ca_cert, token, user)

    return make


def missing(what: str, how: str) -> NoReturn:
    """A tool the tests need is absent: a failure, in CI and locally alike (a skipped
    test proves nothing)."""
    pytest.fail(f"{what} is not installed: {how}", pytrace=False)


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "install-helm.sh")],
                          capture_output=True, text=True, timeout=300)
    path = Path(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    if proc.returncode != 0 or path is None or not path.is_file():
        missing("helm", f"run `make setup` (scripts/install-helm.sh):\n{proc.stderr}")
    assert path is not None
    return path


HelmRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def helm(helm_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> HelmRunner:
    """Run helm with private config/cache dirs: ``helm("lint", str(CHART))``."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}

    def run(*args: str, check: bool = True, kubeconfig: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [str(helm_bin), *args]
        if kubeconfig is not None:
            argv.append(f"--kubeconfig={kubeconfig}")
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}{proc.stderr}")
        return proc

    return run
