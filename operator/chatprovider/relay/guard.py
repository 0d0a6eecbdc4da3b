"""Limits on a stream once it has started: a maximum duration, and re-authorization.

A stream may last far longer than the caches that admitted it. While it runs, the caller's
token and its right to ``use`` the provider are checked again every ``interval`` seconds (the
access cache's TTL: the same answers a new request would get); a stream may also be given a
maximum duration. When either says no, the stream ends with an error event in the OpenAI
envelope (and no ``data: [DONE]``), so the client sees why it stopped.

A check that cannot be made (the API server is unreachable) does not cut a stream that was
authorized: only a definite refusal does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from chatprovider.domain.openai_errors import OpenAIError

__all__ = ["StreamCut", "StreamGuard"]

log = logging.getLogger(__name__)

#: Longest a re-authorization may take before it is abandoned (the stream goes on).
RECHECK_TIMEOUT = 5.0


class StreamCut(Exception):
    """The stream must end now with ``error`` as its last event."""

    def __init__(self, error: OpenAIError) -> None:
        super().__init__(error.message)
        self.error = error


class StreamGuard:
    """Feed it the loop's clock; :meth:`due` says when it wants to run, :meth:`run` runs it."""

    def __init__(self, started: float, *, recheck: Callable[[], Awaitable[None]] | None,
                 interval: float, max_duration: float) -> None:
        """``recheck`` raises OpenAIError (401/403) when the caller may no longer stream;
        ``interval`` 0 or no ``recheck``: never re-checked; ``max_duration`` 0: no limit."""
        self._recheck = recheck if interval > 0 else None
        self._interval = interval
        self._end = started + max_duration if max_duration > 0 else None
        self._next = started + interval if self._recheck is not None else None

    def due(self) -> float | None:
        """When :meth:`run` next has something to do (loop time), or None."""
        times = [t for t in (self._next, self._end) if t is not None]
        return min(times) if times else None

    async def run(self, now: float) -> None:
        """Enforce what is due at ``now``; raises :class:`StreamCut`."""
        if self._end is not None and now >= self._end:
            raise StreamCut(OpenAIError(
                408, "the stream reached the relay's maximum duration", code="stream_timeout"))
        if self._next is None or now < self._next or self._recheck is None:
            return
        self._next = now + self._interval
        try:
            async with asyncio.timeout(RECHECK_TIMEOUT):
                await self._recheck()
        except OpenAIError as refusal:
            if refusal.status in (401, 403):
                raise StreamCut(refusal) from None
            log.info("could not re-authorize a stream (%s); it goes on", refusal.code)
        except TimeoutError:
            log.info("re-authorizing a stream took over %.0fs; it goes on", RECHECK_TIMEOUT)
