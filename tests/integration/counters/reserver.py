"""One independent client racing for a quota: ``python -m tests.integration.counters.reserver``.

Arguments: the Redis URL, the mode (``tokens``: a 10,000-token-per-minute quota, ``requests``: a
37-request-per-minute one), the number of concurrent reservers, a seed, the clock's fixed *now*,
the quota's name. It connects, prints ``ready``, waits for a line on stdin (so that every
process starts racing at once), then each reserver sends requests through the quota gate until
one is refused. Prints the admitted reservations' token totals as a JSON list.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

from chatprovider.api.quota import ChatQuotaSpec
from chatprovider.counters.gate import QuotaGate
from chatprovider.counters.redis_store import RedisCounterStore
from chatprovider.domain.apis import Operation
from chatprovider.domain.openai_errors import OpenAIError
from chatprovider.domain.quota.demand import demand_of
from chatprovider.domain.quota.limits import Quota, applicable_limits
from chatprovider.domain.routing import ProviderRef

LIMITS = {"tokens": {"tokensPerMinute": 10_000}, "requests": {"requestsPerMinute": 37}}


class Caller:
    def __init__(self, username: str) -> None:
        self.username = username
        self.groups = ("team",)


async def main(url: str, mode: str, reservers: int, seed: int, now: float, name: str) -> None:
    quota = Quota("llm", name, ChatQuotaSpec.model_validate({
        "providers": {"names": ["vllm"]}, "subjects": [{"kind": "Group", "name": "team"}],
        "scope": "Shared", "limits": LIMITS[mode]}))
    store = RedisCounterStore(url)
    gate = QuotaGate(store, fail_open=False, clock=lambda: now)
    await store.read(["warm-up"], now)  # connect before the race
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    admitted: list[int] = []

    async def reserver(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        limits = applicable_limits([quota], Caller(f"caller-{seed}-{i}"),
                                   ProviderRef("llm", "vllm"), {})
        while True:
            body = {"messages": [{"role": "user", "content": "x" * rng.randrange(0, 800)}],
                    "max_tokens": rng.randrange(50, 200)}
            demand = demand_of(Operation.CHAT, body)
            try:
                await gate.admit(limits, demand)
            except OpenAIError as exc:
                assert exc.status == 429, exc
                return
            admitted.append(demand.total)

    await asyncio.gather(*(reserver(i) for i in range(reservers)))
    await store.aclose()
    print(json.dumps(admitted), flush=True)


if __name__ == "__main__":
    url, mode, reservers, seed, now, name = sys.argv[1:7]
    asyncio.run(main(url, mode, int(reservers), int(seed), float(now), name))
