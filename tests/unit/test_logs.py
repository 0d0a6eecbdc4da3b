"""Log lines: bearer tokens redacted everywhere (message, fields, traceback); JSON carries the
structured fields of a record; the message is formatted once."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from chatprovider.logs import (
    JsonFormatter,
    LineHandler,
    RedactingFilter,
    SecretValues,
    TextFormatter,
    TransientRetryFilter,
)

TOKEN = "sk-canary-0123456789abcdef"


@pytest.fixture()
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("chatprovider.test-logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, out, handler
    logger.handlers.clear()


def test_json_lines_carry_the_fields_of_a_record(captured) -> None:
    logger, out, handler = captured
    handler.setFormatter(JsonFormatter())
    logger.info("%s %s %d", "POST", "/v1/chat/completions", 200,
                extra={"fields": {"method": "POST", "status": 200, "stream": False,
                                  "provider": None, "message": "not overridden"}})
    entry = json.loads(out.getvalue())
    assert entry["message"] == "POST /v1/chat/completions 200"
    assert entry["level"] == "info" and entry["logger"] == "chatprovider.test-logs"
    assert (entry["method"], entry["status"], entry["stream"], entry["provider"]) == (
        "POST", 200, False, None)


def test_time_stamps_are_logging_s_own_within_a_second_and_across_one() -> None:
    ours, json_lines, reference = TextFormatter(), JsonFormatter(), logging.Formatter()
    for created in (1_765_000_000.001, 1_765_000_000.999, 1_765_000_001.5, 1_765_000_000.25):
        record = logging.LogRecord("x", logging.INFO, "", 0, "m", None, None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.formatTime(record) == reference.formatTime(record)
        assert ours.format(record).startswith(reference.formatTime(record) + " INFO    x: m")
        assert json.loads(json_lines.format(record))["time"] == \
            reference.formatTime(record, "%Y-%m-%dT%H:%M:%S")


def test_text_lines_show_the_message_only(captured) -> None:
    logger, out, handler = captured
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.info("answered %d", 200, extra={"fields": {"status": 200}})
    assert out.getvalue() == "INFO answered 200\n"


@pytest.mark.parametrize("formatter", [JsonFormatter(), logging.Formatter("%(message)s")],
                         ids=["json", "text"])
def test_bearer_tokens_are_redacted_in_message_fields_and_traceback(captured, formatter) -> None:
    logger, out, handler = captured
    handler.setFormatter(formatter)
    logger.warning("header was Bearer %s", TOKEN,
                   extra={"fields": {"path": f"/v1/Bearer {TOKEN}"}})
    try:
        raise ValueError(f"upstream echoed Authorization: Bearer {TOKEN}")
    except ValueError:
        logger.exception("failed")
    text = out.getvalue()
    assert TOKEN not in text
    assert text.count("[REDACTED]") >= (3 if isinstance(formatter, JsonFormatter) else 2)


def test_the_message_is_formatted_once(captured) -> None:
    logger, out, handler = captured
    handler.setFormatter(JsonFormatter())
    calls = []

    class Counted:
        def __str__(self) -> str:
            calls.append(1)
            return "x"

    logger.info("value %s", Counted())
    assert json.loads(out.getvalue())["message"] == "value x"
    assert len(calls) == 1


def test_a_bad_format_string_does_not_raise_in_the_filter() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d", ("not a number",), None)
    assert RedactingFilter().filter(record)  # left for the handler's handleError to report
    assert record.args == ("not a number",)


def test_the_exact_values_of_secrets_read_are_masked_wherever_they_appear() -> None:
    secrets = SecretValues()
    secrets.add("plain-key-without-bearer-1")
    secrets.add("short")  # too short to mask safely: kept out
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter(secrets))
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("chatprovider.test-secret-values")
    logger.handlers[:] = [handler]
    logger.propagate = False
    try:
        logger.warning("upstream said key=%s", "plain-key-without-bearer-1",
                       extra={"fields": {"echo": "x-api-key: plain-key-without-bearer-1"}})
    finally:
        logger.handlers.clear()
    text = out.getvalue()
    assert "plain-key-without-bearer-1" not in text
    entry = json.loads(text)
    assert entry["message"] == "upstream said key=[REDACTED]"
    assert entry["echo"] == "x-api-key: [REDACTED]"
    assert len(secrets) == 1


def test_the_longest_secret_is_masked_whole_and_the_oldest_is_dropped_past_the_limit() -> None:
    secrets = SecretValues()
    secrets.limit = 2
    secrets.add("abcdefgh")
    secrets.add("abcdefgh-longer")
    assert secrets.redact("k=abcdefgh-longer") == "k=[REDACTED]"
    secrets.add("third-value")
    assert secrets.redact("abcdefgh") == "abcdefgh"  # the oldest was dropped
    assert secrets.redact("third-value abcdefgh-longer") == "[REDACTED] [REDACTED]"


def _kopf_record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("kopf._cogs.clients.watching", level, __file__, 1, message, None,
                             None)


STORAGE_429 = ("Request attempt #1/9 failed; will retry: GET https://127.0.0.1:6443/apis/"
               "ai.chatprovider.dev/v1alpha1/chatproviders?watch=true -> APITooManyRequestsError("
               "'storage is (re)initializing', {'kind': 'Status', 'code': 429}, status=429)")


def test_a_retried_429_from_a_fresh_crd_is_info_not_error() -> None:
    record = _kopf_record(STORAGE_429)
    assert TransientRetryFilter(logging.INFO).filter(record)
    assert record.levelname == "INFO" and record.levelno == logging.INFO
    assert not TransientRetryFilter(logging.WARNING).filter(_kopf_record(STORAGE_429))
    older = _kopf_record(STORAGE_429.replace("#1/9", "1"))  # kopf before 1.38
    assert TransientRetryFilter(logging.INFO).filter(older) and older.levelname == "INFO"


def test_other_kopf_errors_stay_errors() -> None:
    for message in (STORAGE_429.replace("will retry", "escalating"),
                    "Request attempt 1 failed; will retry: GET /x -> APIServerError('boom')"):
        record = _kopf_record(message)
        assert TransientRetryFilter(logging.WARNING).filter(record)
        assert record.levelno == logging.ERROR
    ours = logging.LogRecord("chatprovider.x", logging.ERROR, __file__, 1, STORAGE_429, None, None)
    assert TransientRetryFilter(logging.WARNING).filter(ours) and ours.levelno == logging.ERROR


class _Stream(io.StringIO):
    """Counts how often the handler flushes (each flush of stderr is one system call)."""

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1


def test_the_lines_of_a_loop_iteration_are_flushed_together_and_a_warning_at_once() -> None:
    stream = _Stream()
    handler = LineHandler(stream)
    logger = logging.getLogger("chatprovider.test-line-handler")
    saved = logger.propagate, logger.level
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)

    async def burst() -> None:
        for n in range(50):
            logger.info("line %d", n)
        assert stream.getvalue().count("\n") == 50 and stream.flushes == 0  # written, pending
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert stream.flushes == 1
        logger.warning("a warning")  # flushed at once: never waits behind a loop turn
        assert stream.flushes == 2

    try:
        asyncio.run(burst())
        asyncio.run(_one(logger))
        assert stream.flushes == 3  # a second loop in turn: flushed at its own iteration's end
        logger.info("outside any loop")
        assert stream.flushes == 4
    finally:
        logger.handlers.clear()
        logger.propagate = saved[0]
        logger.setLevel(saved[1])


async def _one(logger: logging.Logger) -> None:
    logger.info("in another loop")
    await asyncio.sleep(0)
