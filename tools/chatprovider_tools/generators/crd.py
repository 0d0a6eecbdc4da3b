"""Writing the generated CRD to the repository, and checking that the committed copies are current.

``python -m chatprovider_tools.generators.crd`` (``make crds``) writes it to every path in
:data:`OUTPUTS`; ``--check`` fails when a committed copy is stale, ``--stdout`` prints it instead.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

from chatprovider.api.crd import CRD_FILENAME, CRD_NAME, render
from chatprovider_tools.generators.paths import repository_root

__all__ = ["OUTPUTS", "main", "stale_outputs", "write_outputs"]

#: Where the rendered CRD is written, relative to the repository root; ``--check`` and the
#: staleness test cover every entry. The chart's copy is read by its ``templates/crds.yaml``
#: (a template, not the chart's ``crds/`` directory, so that upgrades update it and
#: ``crds.install`` / ``crds.keep`` apply).
OUTPUTS: tuple[Path, ...] = (
    Path("crds") / CRD_FILENAME,
    Path("charts") / "chatprovider-operator" / "files" / "crds" / CRD_FILENAME,
)


def stale_outputs(root: Path, text: str | None = None) -> list[Path]:
    """The paths of :data:`OUTPUTS` under ``root`` whose content is not ``text``."""
    text = render() if text is None else text
    return [
        root / rel
        for rel in OUTPUTS
        if not (root / rel).is_file() or (root / rel).read_text(encoding="utf-8") != text
    ]


def write_outputs(root: Path, text: str | None = None) -> list[Path]:
    """Write every stale path of :data:`OUTPUTS` under ``root``; return the ones written."""
    text = render() if text is None else text
    written = stale_outputs(root, text)
    for path in written:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return written


def _diff(path: Path, text: str, limit: int = 40) -> str:
    old = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    lines = list(difflib.unified_diff(old, text.splitlines(), str(path), "generated", lineterm=""))
    more = [f"... ({len(lines) - limit} more lines)"] if len(lines) > limit else []
    return "\n".join(lines[:limit] + more)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chatprovider_tools.generators.crd",
        description=f"Generate the {CRD_NAME} CRD from chatprovider.api.v1alpha1.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if a committed copy is stale")
    mode.add_argument("--stdout", action="store_true", help="print the CRD instead of writing")
    parser.add_argument(
        "--root", type=Path, default=repository_root(), help="repository root (%(default)s)"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        stale = stale_outputs(args.root, text)
        for path in stale:
            print(f"{path} is stale; run `make crds` (python -m chatprovider_tools.generators.crd)"
                  f" and commit the result.\n{_diff(path, text)}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_outputs(args.root, text):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
