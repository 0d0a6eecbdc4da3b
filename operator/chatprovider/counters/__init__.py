"""Counter stores for quotas, and the gate that uses them.

Modules: ``store`` (the interface and its one error), ``memory`` (one relay replica),
``redis_store`` (several replicas sharing Redis or Valkey; its Lua in ``scripts``), ``opening``
(the store the settings name), ``gate`` (admission, settlement, fail open or closed). The
quota logic itself is pure, in :mod:`chatprovider.domain.quota`.
"""

from chatprovider.counters.gate import Admission, QuotaGate
from chatprovider.counters.memory import MemoryCounterStore
from chatprovider.counters.opening import open_store
from chatprovider.counters.redis_store import RedisCounterStore
from chatprovider.counters.store import CounterStore, CounterStoreUnavailable

__all__ = ["Admission", "CounterStore", "CounterStoreUnavailable", "MemoryCounterStore",
           "QuotaGate", "RedisCounterStore", "open_store"]
