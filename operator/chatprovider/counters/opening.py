"""The counter store a process's settings name: Redis when ``quota_redis_url`` is set, else in
memory."""

from __future__ import annotations

from chatprovider.counters.memory import MemoryCounterStore
from chatprovider.counters.redis_store import RedisCounterStore
from chatprovider.counters.store import CounterStore
from chatprovider.settings import OperatorSettings

__all__ = ["open_store"]


def open_store(settings: OperatorSettings) -> CounterStore:
    """The store of ``settings`` (no connection is made until it is first used)."""
    if settings.quota_redis_url:
        return RedisCounterStore(settings.quota_redis_url,
                                 password=settings.quota_redis_password or None,
                                 timeout=settings.quota_store_timeout)
    return MemoryCounterStore()
