"""The counter store a process's settings name."""

from chatprovider.counters import MemoryCounterStore, RedisCounterStore, open_store
from chatprovider.settings import OperatorSettings


def test_without_a_redis_url_the_counters_are_in_memory() -> None:
    assert isinstance(open_store(OperatorSettings()), MemoryCounterStore)


def test_a_redis_url_names_the_shared_store_and_its_password_is_never_shown() -> None:
    store = open_store(OperatorSettings(quota_redis_url="redis://counters.quota:6379/0",
                                        quota_redis_password="s3cret-pw"))
    assert isinstance(store, RedisCounterStore)
    assert repr(store) == "RedisCounterStore('redis://counters.quota:6379')"
    assert "s3cret-pw" not in repr(store)
