"""Logging set-up: text or JSON lines, with a last-line-of-defence redaction of bearer tokens.

A record may carry structured fields as ``extra={"fields": {...}}`` (the relay's access log
does): JSON output puts them next to the message, text output shows the message only.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

__all__ = ["JsonFormatter", "RedactingFilter", "setup_logging"]

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{4,}")
_RESERVED = frozenset({"time", "level", "logger", "message", "exception"})
_EXCEPTIONS = logging.Formatter()


def _redact(text: str) -> str:
    return _BEARER.sub(r"\1[REDACTED]", text) if "earer" in text else text


class RedactingFilter(logging.Filter):
    """Masks ``Bearer <token>`` in every record, its fields included. Nothing should log a key;
    this makes sure. The message is formatted here, once (the formatter then reuses it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg, record.args = _redact(record.getMessage()), None
        except Exception:  # noqa: BLE001 - a bad format string: the handler reports it
            return True
        if record.exc_info and not record.exc_text:  # formatters reuse exc_text
            record.exc_text = _redact(_EXCEPTIONS.formatException(record.exc_info))
        fields: dict[str, Any] | None = getattr(record, "fields", None)
        if fields:
            record.fields = {k: _redact(v) if isinstance(v, str) else v
                             for k, v in fields.items()}
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields: dict[str, Any] | None = getattr(record, "fields", None)
        if fields:
            entry.update((k, v) for k, v in fields.items() if k not in _RESERVED)
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
