"""Pydantic JSON Schema to Kubernetes *structural* OpenAPI v3 schema.

A CustomResourceDefinition needs a structural schema: every node has a ``type``, there are no
references, and no ``anyOf``/``oneOf``/``allOf`` at the places pydantic puts them. This module
rewrites what ``BaseModel.model_json_schema(by_alias=True)`` produces:

* every ``$ref`` is inlined from ``$defs``; the referring site's keys (its ``description``,
  ``default``, ...) win over the definition's;
* ``anyOf: [X, {type: null}]`` (an ``Optional`` field) becomes plain ``X``: the API server drops
  nulls sent for such fields, so ``nullable`` is not needed;
* ``title`` and ``additionalProperties: false`` are dropped (the API server prunes and, under
  strict field validation, refuses unknown fields on its own); a ``default`` of ``null`` is
  dropped; ``const`` becomes a one-value ``enum``; a numeric ``exclusiveMinimum``/``Maximum``
  (JSON Schema 2020-12) becomes the OpenAPI v3.0 boolean form;
* descriptions are whitespace-normalised, so that docstrings wrapped in the source read as one
  paragraph in ``kubectl explain``;
* ``x-kubernetes-*`` extensions declared with ``json_schema_extra`` pass through unchanged.

Anything else is refused with :class:`SchemaError` naming the keyword and where it occurs, so
that a new pydantic construct cannot silently produce a schema the API server would reject.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["SchemaError", "resource_schema", "structural_schema"]

JsonSchema = dict[str, Any]

#: Keywords copied unchanged (scalar constraints and Kubernetes extensions).
_PASSTHROUGH = frozenset(
    {
        "type",
        "default",
        "enum",
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "required",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
    }
)
#: Keywords that carry no meaning for the API server.
_DROPPED = frozenset({"title", "examples"})
_NULL = {"type": "null"}


class SchemaError(ValueError):
    """The JSON Schema uses a construct that has no structural OpenAPI equivalent."""


def structural_schema(model: type[BaseModel]) -> JsonSchema:
    """The structural OpenAPI v3 schema of ``model`` (serialised by alias)."""
    raw = model.model_json_schema(by_alias=True)
    defs = raw.pop("$defs", {})
    return _Converter(defs).convert(raw, model.__name__)


def resource_schema(model: type[BaseModel]) -> JsonSchema:
    """The schema of a whole custom resource: :func:`structural_schema` of ``model`` with the
    conventions for the top level applied.

    ``apiVersion`` and ``kind`` keep only their type and description (the API server sets and
    checks them); ``metadata`` is a bare ``type: object`` (the API server validates it); the
    object itself is closed like every other (the model may accept extra keys, the API does not).
    """
    raw = model.model_json_schema(by_alias=True)
    defs = raw.pop("$defs", {})
    raw.pop("additionalProperties", None)
    properties = dict(raw["properties"])
    for name in ("apiVersion", "kind"):
        properties[name] = {"type": "string", "description": properties[name]["description"]}
    properties["metadata"] = {"type": "object"}
    return _Converter(defs).convert({**raw, "properties": properties}, model.__name__)


def _normalize_description(text: str) -> str:
    return " ".join(text.split())


class _Converter:
    def __init__(self, defs: Mapping[str, JsonSchema]) -> None:
        self._defs = defs

    def convert(self, node: Mapping[str, Any], path: str) -> JsonSchema:
        node = self._resolve(node, path)
        out: JsonSchema = {}
        for key, value in node.items():
            if key in _DROPPED or (key == "default" and value is None):
                continue
            if key == "description":
                out[key] = _normalize_description(value)
            elif key == "properties":
                out[key] = {
                    name: self.convert(prop, f"{path}.{name}") for name, prop in value.items()
                }
            elif key == "items":
                out[key] = self.convert(value, f"{path}[]")
            elif key == "additionalProperties":
                if value is False:
                    continue
                if value is True or "properties" in node:
                    raise SchemaError(
                        f"{path}: free-form objects are not structural; declare the fields"
                    )
                out[key] = self.convert(value, f"{path}{{}}")
            elif key == "const":
                out["enum"] = [value]
            elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
                out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                out[key] = True
            elif key in _PASSTHROUGH:
                out[key] = value
            else:
                raise SchemaError(f"{path}: JSON Schema keyword {key!r} is not supported")
        if "type" not in out and not out.get("x-kubernetes-int-or-string"):
            raise SchemaError(f"{path}: every node of a structural schema needs a type")
        return out

    def _resolve(self, node: Mapping[str, Any], path: str) -> Mapping[str, Any]:
        """Inline ``$ref`` and unwrap ``Optional``, until neither is left at the top of ``node``."""
        while True:
            if "$ref" in node:
                target = self._definition(node["$ref"], path)
                node = _overlay(target, {k: v for k, v in node.items() if k != "$ref"})
            elif "anyOf" in node:
                branches = [b for b in node["anyOf"] if b != _NULL]
                if len(branches) != 1:
                    raise SchemaError(f"{path}: unions other than Optional[X] are not structural")
                node = _overlay(branches[0], {k: v for k, v in node.items() if k != "anyOf"})
            elif "oneOf" in node or "allOf" in node:
                raise SchemaError(f"{path}: oneOf/allOf are not supported")
            else:
                return node

    def _definition(self, ref: str, path: str) -> Mapping[str, Any]:
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix):] not in self._defs:
            raise SchemaError(f"{path}: unresolvable reference {ref!r}")
        return self._defs[ref[len(prefix):]]


def _overlay(base: Mapping[str, Any], site: Mapping[str, Any]) -> JsonSchema:
    """``base`` with the keys of ``site`` on top; CEL rules declared at both places add up."""
    merged = {**base, **site}
    rules = [*base.get("x-kubernetes-validations", []), *site.get("x-kubernetes-validations", [])]
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged
