"""Logging set-up: text or JSON lines, with a last line of defence that redacts secrets.

Two kinds of redaction: anything after ``Bearer `` (any token, ours or a caller's), and the
exact values of the Secrets the process has read (:class:`SecretValues`, filled by
:class:`~chatprovider.kube.objects.ReferencedObjects`), wherever they appear in a line.

Known transient answers of the API server that kopf retries by itself are logged at INFO, not
ERROR (:class:`TransientRetryFilter`): a ``429`` such as "storage is (re)initializing", which a
CRD that was just applied answers for a moment. A retry that gives up stays an ERROR.

A record may carry structured fields as ``extra={"fields": {...}}`` (the relay's access log
does): JSON output puts them next to the message, text output shows the message only.

Lines are written as they are logged, and flushed to stderr once per event-loop iteration
(:class:`LineHandler`): under load the relay's access lines cost one system call per iteration,
not one each. A WARNING or worse, and anything logged outside an event loop, is flushed at once.
What is written to ``sys.stderr`` directly (a traceback the interpreter prints) may come before
INFO lines of the same iteration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
import time
from typing import Any, TextIO

__all__ = [
    "JsonFormatter", "LineHandler", "RedactingFilter", "SecretValues", "TextFormatter",
    "TransientRetryFilter", "setup_logging",
]

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{4,}")
_RESERVED = frozenset({"time", "level", "logger", "message", "exception"})
_EXCEPTIONS = logging.Formatter()
_MASK = "[REDACTED]"


class SecretValues:
    """The secret strings this process holds (API keys read from Secrets), to mask in logs.

    Values shorter than :attr:`min_length` are not kept: masking a short value would mangle
    ordinary text and protects little. At most :attr:`limit` values are kept, the oldest
    dropped first; a rotated-away key stays masked until then."""

    min_length = 8
    limit = 10_000

    def __init__(self) -> None:
        self._values: dict[str, None] = {}
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        value = value.strip()
        if len(value) < self.min_length or value in self._values:
            return
        self._values[value] = None
        while len(self._values) > self.limit:
            del self._values[next(iter(self._values))]
        self._pattern = None

    def __len__(self) -> int:
        return len(self._values)

    def redact(self, text: str) -> str:
        if not self._values:
            return text
        if self._pattern is None:  # longest first, so a value inside another is not half-masked
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered)))
        return self._pattern.sub(_MASK, text)


class RedactingFilter(logging.Filter):
    """Masks ``Bearer <token>`` and every value of ``secrets`` in every record, its fields and
    traceback included. Nothing should log a key; this makes sure. The message is formatted
    here, once (the formatter then reuses it)."""

    def __init__(self, secrets: SecretValues | None = None) -> None:
        super().__init__()
        self._secrets = secrets

    def _redact(self, text: str) -> str:
        if "earer" in text:
            text = _BEARER.sub(r"\1" + _MASK, text)
        return self._secrets.redact(text) if self._secrets is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg, record.args = self._redact(record.getMessage()), None
        except Exception:  # noqa: BLE001 - a bad format string: the handler reports it
            return True
        if record.exc_info and not record.exc_text:  # formatters reuse exc_text
            record.exc_text = self._redact(_EXCEPTIONS.formatException(record.exc_info))
        fields: dict[str, Any] | None = getattr(record, "fields", None)
        if fields:
            record.fields = {k: self._redact(v) if isinstance(v, str) else v
                             for k, v in fields.items()}
        return True


class TransientRetryFilter(logging.Filter):
    """Lowers kopf's "Request attempt N failed; will retry: ... APITooManyRequestsError(...)"
    from ERROR to INFO (the API server asked to be asked again later, and kopf does, with
    back-off); drops it when INFO is below ``level``."""

    # kopf 1.3x: "Request attempt #1/9 failed; will retry: GET ... -> APITooManyRequestsError("
    _RETRY = re.compile(r"^Request attempt #?\d+(/\d+)? failed; will retry: "
                        r".*APITooManyRequestsError")

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__()
        self._level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.name.startswith("kopf") and \
                self._RETRY.match(record.getMessage()):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.INFO >= self._level
        return True


class LineHandler(logging.StreamHandler[TextIO]):
    """Writes each record at once; flushes it with the other lines of the event loop's
    iteration, in the loop's next turn, when logged on a loop's thread (one system call for
    them all). A WARNING or worse, and a record logged outside a loop, is flushed at once, and
    so is everything before it. Lines still to flush are lost if the process is killed, and a
    loop blocked in synchronous code holds its last lines until it returns; logging's shutdown
    flushes the rest."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: asyncio.AbstractEventLoop | None = None
        """The loop a flush is scheduled on (the process may run more than one, in turn)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING or not self._flush_soon():
                self.flush()
        except RecursionError:  # as logging's own handlers
            raise
        except Exception:  # noqa: BLE001 - logging reports it (Handler.handleError)
            self.handleError(record)

    def _flush_soon(self) -> bool:
        """Flush in the running loop's next turn; False when no loop runs on this thread."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if self._pending is not loop:
            self._pending = loop
            loop.call_soon(self._flush_pending)
        return True

    def _flush_pending(self) -> None:
        self._pending = None
        with contextlib.suppress(OSError, ValueError):  # stderr gone: as logging.shutdown does
            self.flush()


def _stderr() -> TextIO:
    """Standard error without line buffering (each line would be a write), or ``sys.stderr``
    itself when it is not a file descriptor (an embedder's or a test's stand-in)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.stderr
    # (not closed: it lives as long as the process, like sys.stderr)
    return open(fd, "w", buffering=1 << 16, encoding="utf-8",  # noqa: SIM115
                errors="backslashreplace", closefd=False)


class _Stamped(logging.Formatter):
    """Time stamps as logging's own (local time), the date and seconds formatted once per
    second: ``time.strftime`` on every line was about 15% of an access-log line's cost."""

    def __init__(self, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self._stamp: tuple[int, str | None, str] = (-1, None, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        second, fmt, text = self._stamp
        if second != int(record.created) or fmt != datefmt:
            second, fmt = int(record.created), datefmt
            text = time.strftime(datefmt or self.default_time_format,
                                 self.converter(record.created))
            self._stamp = (second, fmt, text)
        return text if datefmt else f"{text},{int(record.msecs):03d}"


class TextFormatter(_Stamped):
    """``TIME LEVEL LOGGER: MESSAGE``, the time to the millisecond."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")


class JsonFormatter(_Stamped):
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


def setup_logging(level: str = "INFO", fmt: str = "text",
                  secrets: SecretValues | None = None) -> None:
    """Log to stderr as ``fmt`` (text or json), masking bearer tokens and ``secrets``."""
    handler = LineHandler(_stderr())
    handler.addFilter(TransientRetryFilter(logging.getLevelName(level.upper())))
    handler.addFilter(RedactingFilter(secrets))
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         TextFormatter())
    # Neither format shows where a line was logged from, or its process or thread: logging's
    # HOWTO ("Optimization") says how not to collect them for every record. (Process-wide, like
    # the root handler set here; it also turns off stack_info= and stacklevel=, unused here.)
    logging._srcfile = None  # noqa: SLF001
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
