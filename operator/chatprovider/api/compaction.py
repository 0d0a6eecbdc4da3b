"""Keeping many validated models in memory at a smaller cost.

Pydantic gives every model instance its own ``set`` of the fields that were given
(``model_fields_set``, what ``exclude_unset`` reads): 200 to 700 bytes per instance, the largest
single part of a :class:`~chatprovider.registry.ProviderView` (a ChatProvider's spec and status
are 18 model instances, about 7 KiB of such sets out of 14 KiB in all). Across providers these
sets take only a handful of distinct values, so :func:`compact` replaces each with one shared
set that refuses to change. Everything that reads models is unchanged (``model_dump``, with
``exclude_unset`` too, equality, copies); assigning a field of a compacted model raises
``AttributeError`` instead of changing a set that other instances share.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["compact"]

M = TypeVar("M", bound=BaseModel)


class _SharedFields(set[str]):
    """A set of given fields that many model instances share. It is a ``set`` (pydantic's
    serializer requires one), and refuses what pydantic would do to it when a field is
    assigned (``add``) or a copy updated (``update``)."""

    __slots__ = ()

    def add(self, element: str) -> None:
        raise AttributeError(f"cannot set {element!r}: this model is compacted (read-only)")

    def update(self, *others: Iterable[str]) -> None:
        raise AttributeError("cannot update the fields of a compacted (read-only) model")


#: One shared set per distinct set of given fields (their number is bounded by the models'
#: shapes, not by the number of objects).
_shared: dict[frozenset[str], _SharedFields] = {}


def compact(model: M) -> M:
    """``model``, and every model inside it, with shared read-only sets of given fields."""
    _share(model)
    return model


def _share(value: Any) -> None:
    if isinstance(value, BaseModel):
        given = frozenset(value.__pydantic_fields_set__)
        shared = _shared.get(given)
        if shared is None:
            shared = _shared[given] = _SharedFields(given)
        object.__setattr__(value, "__pydantic_fields_set__", shared)
        for field in value.__dict__.values():
            _share(field)
    elif isinstance(value, list | tuple):
        for item in value:
            _share(item)
    elif isinstance(value, dict):
        for item in value.values():
            _share(item)
