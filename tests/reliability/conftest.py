"""The reliability suite: faults, attacks and bad input, with measured figures.

Every test records what it measured with the ``figure`` fixture; the figures are printed at the
end of the run (a "reliability figures" section) and written to
``$CHATPROVIDER_CACHE/reliability-figures.json`` (default ``~/.cache/chatprovider``), from which
docs/reliability.md quotes them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

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
