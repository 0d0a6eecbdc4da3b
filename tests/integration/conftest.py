"""Fixtures for tests against the real API server that need the project's CRDs installed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"


@pytest.fixture(scope="session")
def chatprovider_crd(kubectl) -> Path:
    """Install the generated CRDs (``crds/*.yaml``) and wait until they are served.

    Idempotent: a server-side apply of unchanged manifests changes nothing, and
    ``--force-conflicts`` takes the fields over if another field manager (an operator that
    installs its CRDs, an earlier run against the same API server) applied them first.
    Returns the directory that was applied.
    """
    kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=chatprovider-tests",
        "-f", str(CRD_DIR),
    )
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRD_DIR))
    # Established means served; kubectl's discovery (which resolves `chatproviders`) can still
    # lag behind for a moment.
    deadline = time.monotonic() + 30
    while (probe := kubectl("get", "chatproviders", "-A", check=False)).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail(f"chatproviders are not served: {probe.stderr}", pytrace=False)
        time.sleep(0.2)
    return CRD_DIR
