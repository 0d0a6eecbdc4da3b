"""docs/reference/chatprovider.md is generated from the models and must not go stale."""

from __future__ import annotations

from pathlib import Path

from chatprovider.api.crd import build_crd
from chatprovider_tools.generators import reference

ROOT = Path(__file__).resolve().parents[3]


def test_the_committed_reference_is_current() -> None:
    assert not reference.stale(ROOT), (
        f"{reference.OUTPUT} is stale: run `python -m chatprovider_tools.generators.reference`"
        " and commit it")
    assert reference.main(["--check", "--root", str(ROOT)]) == 0


def _fields(schema: dict, path: str = "") -> list[str]:
    out = []
    for name, prop in (schema.get("properties") or {}).items():
        out.append(f"{path}.{name}" if path else name)
        node = prop.get("items", prop) if prop.get("type") == "array" else prop
        suffix = "[]" if prop.get("type") == "array" else ""
        out += _fields(node, (f"{path}.{name}" if path else name) + suffix)
    return out


def test_every_field_has_a_row_and_every_object_a_section() -> None:
    text = reference.render()
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for field in _fields(schema):
        parent, _, name = field.rpartition(".")
        assert f"| `{name}`" in text, field
        if parent:
            assert f"\n## {parent}\n" in text, parent


def test_links_to_sections_resolve() -> None:
    import re

    text = reference.render()
    anchors = {reference._slug(h) for h in re.findall(r"^## (.+)$", text, re.M)}
    for target in re.findall(r"\]\(#([^)]+)\)", text):
        assert target in anchors, target


def test_stale_detects_a_change(tmp_path) -> None:
    (tmp_path / reference.OUTPUT).parent.mkdir(parents=True)
    (tmp_path / reference.OUTPUT).write_text("old\n")
    assert reference.stale(tmp_path)
    assert reference.main(["--check", "--root", str(tmp_path)]) == 1
    assert reference.main(["--root", str(tmp_path)]) == 0
    assert not reference.stale(tmp_path)
