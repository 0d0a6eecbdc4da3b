"""Bounded concurrency per provider: a semaphore each, waiting at most ``queue_timeout``.

Over the limit a request waits for a slot; if none frees up in time it is refused with a 429 and
``Retry-After: 1`` (OpenAI clients retry those with back-off). A stream holds its slot until it
ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chatprovider.domain.openai_errors import OpenAIError
from chatprovider.domain.routing import ProviderRef

__all__ = ["ProviderBusy", "ProviderLimiter"]


class ProviderBusy(OpenAIError):
    """No slot freed up within the queue timeout."""

    def __init__(self, provider: ProviderRef) -> None:
        super().__init__(429, f"provider {provider} is at its concurrency limit; retry shortly",
                         code="provider_busy", headers={"Retry-After": "1"})


class ProviderLimiter:
    """One semaphore per provider, created on first use."""

    def __init__(self, limit: int, queue_timeout: float,
                 on_busy: Callable[[ProviderRef], None] | None = None) -> None:
        self._limit = limit
        self._timeout = queue_timeout
        self._on_busy = on_busy
        self._slots: dict[ProviderRef, asyncio.Semaphore] = {}

    def slot(self, provider: ProviderRef) -> _Slot:
        """``async with limiter.slot(provider):`` holds one of its slots (a class, not a
        generator-based context manager: a third of the cost, on every request)."""
        return _Slot(self, provider)

    async def _acquire(self, provider: ProviderRef) -> asyncio.Semaphore:
        slots = self._slots.get(provider)
        if slots is None:
            slots = self._slots[provider] = asyncio.Semaphore(self._limit)
        if slots.locked():
            try:
                if self._timeout <= 0:
                    raise TimeoutError
                async with asyncio.timeout(self._timeout):
                    await slots.acquire()
            except TimeoutError:
                if self._on_busy is not None:
                    self._on_busy(provider)
                raise ProviderBusy(provider) from None
        else:
            await slots.acquire()
        return slots


class _Slot:
    """One slot of a provider, held for an ``async with`` block."""

    __slots__ = ("_limiter", "_provider", "_held")

    def __init__(self, limiter: ProviderLimiter, provider: ProviderRef) -> None:
        self._limiter = limiter
        self._provider = provider
        self._held: asyncio.Semaphore | None = None

    async def __aenter__(self) -> None:
        self._held = await self._limiter._acquire(self._provider)  # noqa: SLF001

    async def __aexit__(self, *exc: object) -> None:
        if self._held is not None:
            self._held.release()
            self._held = None
