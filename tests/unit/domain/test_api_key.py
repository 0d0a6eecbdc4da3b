"""A Secret's value is usable as an API key only as printable text; surrounding whitespace goes."""

from __future__ import annotations

import pytest

from chatprovider.domain.api_key import api_key_from


@pytest.mark.parametrize(("raw", "key"), [
    (b"sk-abc", "sk-abc"),
    (b"sk-abc\n", "sk-abc"),  # echo's newline
    (b"  sk-abc \r\n", "sk-abc"),
    (b"", None),
    (b" \n", None),
    (b"\xff\xfe", None),  # not UTF-8
    (b"sk-a\x00bc", None),  # not printable: it would break the header
    (b"sk-a\nbc", None),
])
def test_only_printable_text_is_a_key(raw: bytes, key: str | None) -> None:
    assert api_key_from(raw) == key
