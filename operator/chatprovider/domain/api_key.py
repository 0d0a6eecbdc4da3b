"""What a Secret's value must be to be sent as an API key: one rule for the prober and the relay."""

from __future__ import annotations

__all__ = ["api_key_from"]


def api_key_from(raw: bytes) -> str | None:
    """The key a Secret's bytes hold: UTF-8 text, stripped of surrounding whitespace (a trailing
    newline from ``echo`` is common), non-empty and printable (it goes into a header). None when
    the value is not usable."""
    try:
        key = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    return key if key and key.isprintable() else None
