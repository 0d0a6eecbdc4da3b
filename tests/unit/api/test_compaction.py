"""Compacted models (what the registry keeps per provider) read exactly as validated ones."""

from __future__ import annotations

from tests.unit.api.helpers import SPEC, STATUS

from chatprovider.api.compaction import compact
from chatprovider.api.v1alpha1 import ChatProviderSpec, ChatProviderStatus


def test_a_compacted_model_dumps_compares_and_copies_like_the_validated_one() -> None:
    for cls, raw in ((ChatProviderSpec, SPEC), (ChatProviderStatus, STATUS)):
        plain, compacted = cls.model_validate(raw), compact(cls.model_validate(raw))
        assert compacted == plain
        for options in ({}, {"by_alias": True, "exclude_unset": True},
                        {"mode": "json", "by_alias": True, "exclude_none": True}):
            assert compacted.model_dump(**options) == plain.model_dump(**options)
        assert compacted.model_fields_set == plain.model_fields_set
        assert compacted.model_copy(deep=True) == plain
