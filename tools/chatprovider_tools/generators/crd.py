"""Writing the generated CRDs to the repository, and checking that the committed copies are current.

``python -m chatprovider_tools.generators.crd`` (``make crds``) writes every CRD of
:data:`chatprovider.api.crd.RESOURCES` to each directory of :data:`DIRECTORIES` (the paths are
:data:`OUTPUTS`); ``--check`` fails when a committed copy is stale, ``--stdout`` prints them
instead (as one multi-document stream).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from chatprovider.api.crd import RESOURCES
from chatprovider_tools.generators.paths import repository_root

__all__ = ["DIRECTORIES", "OUTPUTS", "expected", "main", "stale_outputs", "write_outputs"]

#: Where the rendered CRDs are written, relative to the repository root. The chart's copies are
#: read by its ``templates/crds.yaml`` (a template, not the chart's ``crds/`` directory, so that
#: upgrades update them and ``crds.install`` / ``crds.keep`` apply).
DIRECTORIES: tuple[Path, ...] = (
    Path("crds"),
    Path("charts") / "chatprovider-operator" / "files" / "crds",
)
#: Every generated file, relative to the repository root; ``--check`` and the staleness test
#: cover each.
OUTPUTS: tuple[Path, ...] = tuple(
    directory / resource.filename for directory in DIRECTORIES for resource in RESOURCES)


def expected() -> dict[Path, str]:
    """The content of each of :data:`OUTPUTS`."""
    texts = {resource.filename: resource.render() for resource in RESOURCES}
    return {rel: texts[rel.name] for rel in OUTPUTS}


def stale_outputs(root: Path, texts: Mapping[Path, str] | None = None) -> list[Path]:
    """The paths of :data:`OUTPUTS` under ``root`` whose content is not the generated one."""
    texts = expected() if texts is None else texts
    return [
        root / rel
        for rel, text in texts.items()
        if not (root / rel).is_file() or (root / rel).read_text(encoding="utf-8") != text
    ]


def write_outputs(root: Path, texts: Mapping[Path, str] | None = None) -> list[Path]:
    """Write every stale path of :data:`OUTPUTS` under ``root``; return the ones written."""
    texts = expected() if texts is None else texts
    written = stale_outputs(root, texts)
    for path in written:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(texts[path.relative_to(root)], encoding="utf-8")
    return written


def _diff(path: Path, text: str, limit: int = 40) -> str:
    old = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    lines = list(difflib.unified_diff(old, text.splitlines(), str(path), "generated", lineterm=""))
    more = [f"... ({len(lines) - limit} more lines)"] if len(lines) > limit else []
    return "\n".join(lines[:limit] + more)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chatprovider_tools.generators.crd",
        description="Generate the CRDs ("
        + ", ".join(resource.crd_name for resource in RESOURCES) + ") from chatprovider.api.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if a committed copy is stale")
    mode.add_argument("--stdout", action="store_true", help="print the CRDs instead of writing")
    parser.add_argument(
        "--root", type=Path, default=repository_root(), help="repository root (%(default)s)"
    )
    args = parser.parse_args(argv)
    texts = expected()
    if args.stdout:
        sys.stdout.write("---\n".join(resource.render() for resource in RESOURCES))
        return 0
    if args.check:
        stale = stale_outputs(args.root, texts)
        for path in stale:
            print(f"{path} is stale; run `make crds` (python -m chatprovider_tools.generators.crd)"
                  f" and commit the result.\n{_diff(path, texts[path.relative_to(args.root)])}",
                  file=sys.stderr)
        return 1 if stale else 0
    for path in write_outputs(args.root, texts):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
