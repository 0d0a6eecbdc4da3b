"""The auth caches: expiry, size bound, one load for concurrent callers, failures not kept."""

from __future__ import annotations

import asyncio

import pytest

from chatprovider.relay.cache import TTLCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_expiry_and_reuse() -> None:
    async def main() -> None:
        clock, calls = Clock(), []
        cache: TTLCache[str, int] = TTLCache(10, 100, clock)

        async def load() -> int:
            calls.append(1)
            return len(calls)

        assert await cache.get("k", load) == 1
        clock.now = 9.9
        assert await cache.get("k", load) == 1
        clock.now = 10.1
        assert await cache.get("k", load) == 2
        assert await cache.get("other", load, ttl=lambda v: 0) == 3
        assert await cache.get("other", load) == 4

    asyncio.run(main())


def test_concurrent_callers_share_one_load_and_a_cancelled_caller_does_not_spoil_it() -> None:
    async def main() -> None:
        cache: TTLCache[str, str] = TTLCache(10, 100)
        calls = 0
        gate = asyncio.Event()

        async def load() -> str:
            nonlocal calls
            calls += 1
            await gate.wait()
            return "v"

        first = asyncio.ensure_future(cache.get("k", load))
        others = [asyncio.ensure_future(cache.get("k", load)) for _ in range(10)]
        await asyncio.sleep(0)
        first.cancel()
        gate.set()
        assert await asyncio.gather(*others) == ["v"] * 10
        assert calls == 1

    asyncio.run(main())


def test_failures_are_not_cached_and_size_is_bounded() -> None:
    async def main() -> None:
        cache: TTLCache[int, int] = TTLCache(10, 3)

        async def boom() -> int:
            raise RuntimeError("api down")

        with pytest.raises(RuntimeError):
            await cache.get(1, boom)
        assert len(cache) == 0
        for i in range(10):
            async def load(i: int = i) -> int:
                return i
            await cache.get(i, load)
        assert len(cache) == 3

    asyncio.run(main())
