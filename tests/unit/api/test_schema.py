"""Pydantic JSON Schema to structural OpenAPI: each rewrite, and refusal of what has none."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from chatprovider.api.schema import SchemaError, resource_schema, structural_schema


class Inner(BaseModel):
    """Inner docstring.

    Second   paragraph."""

    model_config = ConfigDict(
        use_attribute_docstrings=True,
        extra="forbid",
        json_schema_extra={"x-kubernetes-validations": [{"rule": "self.a > 0", "message": "m"}]},
    )

    a: int = Field(default=1, gt=0, lt=10)
    """The   a,
    wrapped."""


class Outer(BaseModel):
    """Outer."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    inner: Inner | None = None
    """Site description wins."""
    plain: Inner = Field(default_factory=Inner)
    names: list[Annotated[str, Field(max_length=3)]] = Field(
        default_factory=list, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Names."""
    mode: Literal["fixed"] = "fixed"
    """Mode."""
    maybe: str | None = Field(default=None, min_length=1)
    """Maybe."""


def test_refs_are_inlined_and_optional_unwrapped() -> None:
    schema = structural_schema(Outer)
    inner = schema["properties"]["inner"]
    assert inner["type"] == "object"
    assert inner["description"] == "Site description wins."
    assert inner["properties"]["a"]["description"] == "The a, wrapped."
    assert "default" not in inner
    assert schema["properties"]["plain"]["description"] == "Inner docstring. Second paragraph."
    assert schema["properties"]["maybe"] == {
        "type": "string", "minLength": 1, "description": "Maybe."
    }


def test_extensions_pass_through_and_numeric_exclusive_bounds_become_openapi_booleans() -> None:
    schema = structural_schema(Outer)
    inner = schema["properties"]["inner"]
    assert inner["x-kubernetes-validations"] == [{"rule": "self.a > 0", "message": "m"}]
    assert inner["properties"]["a"] == {
        "type": "integer",
        "default": 1,
        "description": "The a, wrapped.",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 10,
        "exclusiveMaximum": True,
    }
    names = schema["properties"]["names"]
    assert names["x-kubernetes-list-type"] == "set"
    assert names["items"] == {"type": "string", "maxLength": 3}


def test_const_becomes_a_one_value_enum_and_titles_go() -> None:
    schema = structural_schema(Outer)
    assert schema["properties"]["mode"] == {
        "type": "string", "enum": ["fixed"], "default": "fixed", "description": "Mode."
    }
    assert "title" not in schema and "additionalProperties" not in schema


def test_resource_schema_applies_the_top_level_conventions() -> None:
    class Resource(BaseModel):
        model_config = ConfigDict(use_attribute_docstrings=True, extra="allow")

        apiVersion: str = "x/v1"
        """API version."""
        kind: Literal["Thing"] = "Thing"
        """Kind."""
        metadata: dict[str, object] = Field(default_factory=dict)
        spec: Outer

    schema = resource_schema(Resource)
    assert schema["properties"]["apiVersion"] == {"type": "string", "description": "API version."}
    assert schema["properties"]["kind"] == {"type": "string", "description": "Kind."}
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["required"] == ["spec"]
    assert "additionalProperties" not in schema


def test_real_unions_are_refused() -> None:
    class Union_(BaseModel):
        value: int | str

    with pytest.raises(SchemaError, match="Union_.value: unions"):
        structural_schema(Union_)


def test_free_form_objects_are_refused() -> None:
    class FreeForm(BaseModel):
        model_config = ConfigDict(extra="allow")

        known: int = 0

    class Holder(BaseModel):
        anything: dict[str, object]
        free: FreeForm

    with pytest.raises(SchemaError, match="Holder.anything"):
        structural_schema(Holder)


def test_string_maps_are_supported() -> None:
    class Labels(BaseModel):
        labels: dict[str, str]

    assert structural_schema(Labels)["properties"]["labels"] == {
        "type": "object", "additionalProperties": {"type": "string"}
    }


def test_unsupported_keywords_are_named() -> None:
    class Unique(BaseModel):
        items: set[int]

    with pytest.raises(SchemaError, match="'uniqueItems'"):
        structural_schema(Unique)
