"""docs/reference/*.md are generated from the models and must not go stale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatprovider_tools.generators import reference

ROOT = Path(__file__).resolve().parents[3]
PAGES = list(reference.OUTPUTS.items())


def test_the_committed_reference_is_current() -> None:
    for output in reference.OUTPUTS:
        assert not reference.stale(ROOT, output=output), (
            f"{output} is stale: run `python -m chatprovider_tools.generators.reference`"
            " and commit it")
    assert reference.main(["--check", "--root", str(ROOT)]) == 0


def test_there_is_a_page_per_resource() -> None:
    assert {str(p) for p in reference.OUTPUTS} == {"docs/reference/chatprovider.md",
                                                   "docs/reference/chatquota.md",
                                                   "docs/reference/chatmodel.md"}


def _fields(schema: dict, path: str = "") -> list[str]:
    out = []
    for name, prop in (schema.get("properties") or {}).items():
        out.append(f"{path}.{name}" if path else name)
        node = prop.get("items", prop) if prop.get("type") == "array" else prop
        suffix = "[]" if prop.get("type") == "array" else ""
        out += _fields(node, (f"{path}.{name}" if path else name) + suffix)
    return out


@pytest.mark.parametrize(("output", "resource"), PAGES, ids=[str(p) for p, _ in PAGES])
def test_every_field_has_a_row_and_every_object_a_section(output, resource) -> None:
    text = reference.render(resource)
    schema = resource.build()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for field in _fields(schema):
        parent, _, name = field.rpartition(".")
        assert f"| `{name}`" in text, field
        if parent:
            assert f"\n## {parent}\n" in text, parent


@pytest.mark.parametrize(("output", "resource"), PAGES, ids=[str(p) for p, _ in PAGES])
def test_links_to_sections_resolve(output, resource) -> None:
    text = reference.render(resource)
    anchors = {reference._slug(h) for h in re.findall(r"^## (.+)$", text, re.M)}
    for target in re.findall(r"\]\(#([^)]+)\)", text):
        assert target in anchors, target


def test_stale_detects_a_change(tmp_path) -> None:
    (tmp_path / reference.OUTPUT).parent.mkdir(parents=True)
    (tmp_path / reference.OUTPUT).write_text("old\n")
    assert reference.stale(tmp_path)
    assert reference.main(["--check", "--root", str(tmp_path)]) == 1
    assert reference.main(["--root", str(tmp_path)]) == 0
    assert not any(reference.stale(tmp_path, output=output) for output in reference.OUTPUTS)
