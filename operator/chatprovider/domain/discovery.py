"""Reading a ``GET /v1/models`` answer, and choosing which models a provider offers."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_MODELS", "MAX_MODEL_ID", "ModelEntry", "ModelsShapeError", "offered_models",
           "parse_models"]

MAX_MODELS = 500
MAX_MODEL_ID = 256


class ModelsShapeError(ValueError):
    """The answer is not an OpenAI model list. The message never quotes the body."""


@dataclass(frozen=True)
class ModelEntry:
    id: str
    owned_by: str | None = None
    source: str = "discovered"


def _clean(value: object, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > limit or not text.isprintable():
        return None
    return text


def parse_models(payload: Any) -> list[ModelEntry]:
    """Parse ``{"object": "list", "data": [{"id": ...}, ...]}`` into bounded, de-duplicated ids.

    Ids that are not printable strings of at most 256 characters are dropped; at most 500 are
    kept. Also accepts a bare list of model objects, as a few servers answer.
    """
    data = payload.get("data") if isinstance(payload, dict) else payload
    if not isinstance(data, list):
        raise ModelsShapeError("the models answer has no 'data' list")
    seen: set[str] = set()
    out: list[ModelEntry] = []
    for item in data:
        if not isinstance(item, dict):
            continue
        model_id = _clean(item.get("id"), MAX_MODEL_ID)
        if model_id is None or model_id in seen:
            continue
        seen.add(model_id)
        out.append(ModelEntry(model_id, _clean(item.get("owned_by"), MAX_MODEL_ID)))
        if len(out) >= MAX_MODELS:
            break
    if data and not out:
        raise ModelsShapeError("the models answer lists no valid model id")
    return out


def offered_models(
    discovered: Sequence[ModelEntry], static: Sequence[str], allow: Sequence[str]
) -> list[ModelEntry]:
    """Discovered then static models (static ones not already discovered), filtered by ``allow``
    glob patterns when any are given, sorted by id, bounded to 500."""
    by_id = {m.id: m for m in discovered}
    for model_id in static:
        by_id.setdefault(model_id, ModelEntry(model_id, None, "static"))
    models = sorted(by_id.values(), key=lambda m: m.id)
    if allow:
        models = [m for m in models if any(fnmatch.fnmatchcase(m.id, p) for p in allow)]
    return models[:MAX_MODELS]
