"""The Dockerfile is hadolint clean. What the image holds and how it runs is tested on the built
image itself (test_image.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def test_hadolint_finds_nothing(hadolint_bin: Path) -> None:
    proc = subprocess.run([str(hadolint_bin), "--no-color", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr
