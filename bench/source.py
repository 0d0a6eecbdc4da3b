"""The code under test: a snapshot of a commit (default HEAD), extracted with ``git archive``.

Other work may be in progress in the working tree; measuring a commit makes a run reproducible
and says exactly what was measured.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from bench.config import ROOT

__all__ = ["snapshot"]


def snapshot(rev: str, into: Path) -> tuple[Path, str]:
    """Extract ``operator/`` at ``rev``; returns (the source root to put first on the path, the
    full commit id)."""
    commit = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True,  # noqa: S607
                            text=True, check=True).stdout.strip()
    root = into / "src" / commit[:12]
    if not (root / "operator" / "chatprovider").is_dir():
        data = subprocess.run(["git", "archive", "--format=tar", commit, "operator"],  # noqa: S607
                              cwd=ROOT, capture_output=True, check=True).stdout
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(root, filter="data")
    return root / "operator", commit
