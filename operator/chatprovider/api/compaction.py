"""Keeping many validated models in memory at a smaller cost.

Pydantic gives every model instance its own ``set`` of the fields that were given
(``model_fields_set``, what ``exclude_unset`` reads): 200 to 700 bytes per instance, the largest
single part of a :class:`~chatprovider.registry.ProviderView` (a ChatProvider's spec and status
are 18 model instances, about 7 KiB of such sets out of 14 KiB in all). Across providers these
sets take only a handful of distinct values, so :func:`compact` replaces each with one shared
set that refuses to change. Everything that reads models is unchanged (``model_dump``, with
``exclude_unset`` too, equality, copies, which get sets of their own); changing a shared set
raises ``AttributeError``, and the API models are frozen besides.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel

__all__ = ["compact"]

M = TypeVar("M", bound=BaseModel)


class _SharedFields(set[str]):
    """A set of given fields that many model instances share. It is a ``set`` (pydantic's
    serializer requires one) that refuses every change; a copy of it (``copy``, ``deepcopy``,
    pickling, so ``model_copy``) is a plain ``set`` of the copied model's own."""

    __slots__ = ()

    def _refuse(self) -> NoReturn:
        raise AttributeError("the fields of a compacted model are read-only (shared)")

    def add(self, element: str) -> NoReturn:
        self._refuse()

    def discard(self, element: object) -> NoReturn:
        self._refuse()

    def remove(self, element: str) -> NoReturn:
        self._refuse()

    def pop(self) -> NoReturn:
        self._refuse()

    def clear(self) -> NoReturn:
        self._refuse()

    def update(self, *others: Iterable[str]) -> NoReturn:
        self._refuse()

    def difference_update(self, *others: Iterable[Any]) -> NoReturn:
        self._refuse()

    def intersection_update(self, *others: Iterable[Any]) -> NoReturn:
        self._refuse()

    def symmetric_difference_update(self, other: Iterable[str]) -> NoReturn:
        self._refuse()

    def __ior__(self, other: Any) -> NoReturn:  # type: ignore[misc]  # as in typeshed
        self._refuse()

    def __iand__(self, other: Any) -> NoReturn:  # type: ignore[misc]  # as in typeshed
        self._refuse()

    def __isub__(self, other: Any) -> NoReturn:  # type: ignore[misc]  # as in typeshed
        self._refuse()

    def __ixor__(self, other: Any) -> NoReturn:  # type: ignore[misc]  # as in typeshed
        self._refuse()

    def __copy__(self) -> set[str]:
        return set(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> set[str]:
        return set(self)

    def __reduce__(self) -> tuple[type[set[str]], tuple[list[str]]]:
        return set, (list(self),)


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
