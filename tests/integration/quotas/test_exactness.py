"""Exact at the boundary across replicas: three ``chatprovider relay`` processes sharing one
redis-server, 50 concurrent callers racing for one quota on a real model.

* Tokens: 10,000 tokens a minute, and a 10,000-token day budget. What is admitted is charged
  the usage the model reported; the total charged never exceeds the limit, and once nothing is
  in flight a further request is refused only when less than one request's reservation is left.
  The per-minute race starts with enough of the minute left that its window cannot turn.
* Requests: 37 a minute, raced by 50 callers at once: exactly 37 admitted. The race starts with
  enough of the minute left, and every answer's reset header proves the window did not turn.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest
from tests.reliability.harness import wait_for

from chatprovider.domain.apis import Operation
from chatprovider.domain.quota.demand import demand_of

from .conftest import QuotaSetup, charged, unique, wait_for_room_in_minute

pytestmark = pytest.mark.integration

CALLERS = 50
#: Common words: the relay's estimate (4 bytes a token) is above Gemma's real count, so that
#: no settlement exceeds its reservation and the limit bounds what is charged. The same prompt
#: every time: llama-server reuses its cache, and the race is bounded by generation alone.
PROMPT = "hello world " * 100
#: Three relays, 50 callers and the model share this machine's cores: a relay can stall past
#: the default 0.5 s store timeout, and a reservation that times out is refused (503), which
#: is not what these tests measure (tests/integration/counters covers time-outs).
RELAY_FLAGS = ("--quota-store-timeout=5",)


def _governed(setup: QuotaSetup, relays, header: str, value: str) -> list[dict]:
    """One request per relay, once each governs (the answers are charged)."""
    answers = []
    for relay in relays:
        answer = wait_for(lambda r=relay: (a := setup.chat(r, max_tokens=8, content=PROMPT))
                          .headers.get(header) == value and a, timeout=10, interval=0.1,
                          what=f"relay {relay.url} to enforce the quota")
        assert answer.status_code == 200
        answers.append(answer.json())
    return answers


async def _race(setup: QuotaSetup, relays, body: dict, *, until_refused: bool
                ) -> tuple[list[httpx.Response], float]:
    """Every caller sends ``body`` through relay ``i % 3`` (again, while ``until_refused``,
    until it is refused); every answer, and how long the race took."""
    answers: list[httpx.Response] = []
    start = asyncio.Event()

    async def caller(i: int, client: httpx.AsyncClient) -> None:
        url = f"{relays[i % len(relays)].url}/v1/chat/completions"
        await start.wait()
        while True:
            answer = await client.post(url, json=body)
            answers.append(answer)
            assert answer.status_code in (200, 429), answer.text
            if answer.status_code == 429 or not until_refused:
                return

    limits = httpx.Limits(max_connections=CALLERS * 2, max_keepalive_connections=CALLERS)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        tasks = [asyncio.create_task(caller(i, client)) for i in range(CALLERS)]
        began = time.monotonic()
        start.set()
        await asyncio.gather(*tasks)
    return answers, time.monotonic() - began


@pytest.mark.parametrize(("limit_field", "window", "code"), [
    ("tokensPerMinute", "minute", "rate_limit_exceeded"),
    ("tokensPerDay", "day", "insufficient_quota"),
])
def test_fifty_callers_on_three_relays_never_pass_a_token_limit(
        quota_setup: QuotaSetup, limit_field: str, window: str, code: str) -> None:
    s = quota_setup
    relays = [s.relay(*RELAY_FLAGS) for _ in range(3)]
    name = unique("tokens")
    limit = 10_000
    if window == "minute":
        wait_for_room_in_minute(45)  # the race and the probes take 10-20 s here
    s.apply_quota(name, {limit_field: limit})
    body = s.body(max_tokens=8, content=PROMPT)
    reservation = demand_of(Operation.CHAT, body).total
    used = [a["usage"]["total_tokens"] for a in _governed(s, relays, "x-ratelimit-limit-tokens",
                                                          str(limit))]

    answers, took = asyncio.run(_race(s, relays, body, until_refused=True))
    admitted = [a for a in answers if a.status_code == 200]
    used += [a.json()["usage"]["total_tokens"] for a in admitted]
    refused = [a for a in answers if a.status_code == 429]
    assert len(refused) == CALLERS
    assert {a.json()["error"]["code"] for a in refused} == {code}

    # Nothing in flight any more: probe one at a time until the budget refuses.
    probes = 0
    while (probe := s.chat(relays[probes % 3], max_tokens=8, content=PROMPT)).status_code == 200:
        used.append(probe.json()["usage"]["total_tokens"])
        probes += 1
        assert probes < 100
    assert probe.status_code == 429

    total = s.tokens_charged(name, window)
    assert total == sum(used)  # each request charged exactly what the model reported
    assert total <= limit
    assert limit - total < reservation  # stopped within one request of the limit
    print(f"\n[quotas] {limit_field}: {len(admitted)} admitted in the race ({took:.1f}s), {probes}"
          f" after it, {len(refused)} refused; charged {total} of {limit}, reservation"
          f" {reservation}, real usage per request {min(used)}-{max(used)}")


def test_fifty_callers_on_three_relays_get_exactly_the_requests_a_minute_allows(
        quota_setup: QuotaSetup) -> None:
    s = quota_setup
    relays = [s.relay(*RELAY_FLAGS) for _ in range(3)]
    name = unique("rpm")
    wait_for_room_in_minute(25)  # the race takes a few seconds
    s.apply_quota(name, {"requestsPerMinute": 37 + len(relays)})
    _governed(s, relays, "x-ratelimit-limit-requests", str(37 + len(relays)))  # 3 of them

    answers, took = asyncio.run(_race(s, relays, s.body(max_tokens=1), until_refused=False))
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: 37, 429: CALLERS - 37}
    # one window: every answer's reset names the same end of minute
    ends = {round((time.time() + _seconds(a.headers["x-ratelimit-reset-requests"])) / 60)
            for a in answers}
    assert len(ends) == 1
    counters = charged(s.redis.url, s.ns, name)
    assert [v for k, v in counters.items() if "|requests|" in k] == [37 + len(relays)]
    print(f"\n[quotas] requests: {dict(statuses)} in {took:.1f}s")


def _seconds(go_duration: str) -> float:
    """``44.75s``, ``1m0s`` -> seconds."""
    minutes, _, rest = go_duration.rpartition("m")
    return (float(minutes) * 60 if minutes else 0.0) + float(rest.removesuffix("s") or 0)
