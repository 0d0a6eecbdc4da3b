"""Where the source checkout is (the generators write into it)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["repository_root"]


def repository_root() -> Path:
    """The source checkout this package runs from (an editable install)."""
    return Path(__file__).resolve().parents[3]
