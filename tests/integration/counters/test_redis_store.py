"""The Redis counter store against a real redis-server: exact under races, keys that expire,
and a store that is killed, frozen and restarted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis
from tests.unit.domain.quota.helpers import ALICE, PROVIDER, quota

from chatprovider.counters.gate import QuotaGate
from chatprovider.counters.memory import MemoryCounterStore
from chatprovider.counters.redis_store import DEFAULT_PREFIX, RedisCounterStore
from chatprovider.counters.store import CounterStoreUnavailable
from chatprovider.domain.openai_errors import OpenAIError
from chatprovider.domain.quota.demand import Demand
from chatprovider.domain.quota.ledger import GRACE, Adjustment, Charge, reserve
from chatprovider.domain.quota.limits import applicable_limits
from chatprovider.domain.quota.windows import Window, window_end
from chatprovider_tools.redisserver import RedisServer

ROOT = Path(__file__).resolve().parents[3]
MAX_REQUEST = 201 + 199  # the largest reservation reserver.py makes (prompt + max_tokens)


def _race(redis_server: RedisServer, mode: str, name: str) -> list[list[int]]:
    """3 processes, 50 reservers in all, racing through the quota gate; each one's
    admissions."""
    now = time.time()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tests.integration.counters.reserver", redis_server.url, mode,
         str(reservers), str(seed), repr(now), name],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=os.environ.copy()) for seed, reservers in enumerate((17, 17, 16))]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", (
                proc.stderr.read() if proc.stderr else "")
        for proc in procs:  # all are connected: start the race
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        admitted: list[list[int]] = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            admitted.append(json.loads(out.strip().splitlines()[-1]))
        return admitted
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def _counter(redis_server: RedisServer, name: str, metric: str) -> int:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        keys = list(client.scan_iter(match=f"{DEFAULT_PREFIX}llm/{name}|*|{metric}|*"))
        assert len(keys) == 1, keys
        return int(client.get(keys[0]) or 0)
    finally:
        client.close()


def test_racing_clients_never_admit_past_a_token_limit_and_stop_within_a_request_of_it(
        redis_server: RedisServer) -> None:
    name = f"tokens-{uuid.uuid4().hex[:6]}"
    per_process = _race(redis_server, "tokens", name)
    admitted = [tokens for process in per_process for tokens in process]
    total = sum(admitted)
    assert total <= 10_000
    assert total > 10_000 - MAX_REQUEST  # each reserver stopped only when it no longer fitted
    assert len(per_process) == 3 and len(admitted) > 20
    assert _counter(redis_server, name, "tokens") == total  # no charge lost or doubled


def test_racing_clients_admit_exactly_the_requests_per_minute(
        redis_server: RedisServer) -> None:
    name = f"requests-{uuid.uuid4().hex[:6]}"
    per_process = _race(redis_server, "requests", name)
    assert sum(map(len, per_process)) == 37
    assert _counter(redis_server, name, "requests") == 37


def test_window_counters_expire_at_their_window_end_plus_grace(redis_server: RedisServer) -> None:
    limits = applicable_limits([quota(f"exp-{uuid.uuid4().hex[:6]}", limits={
        "requestsPerMinute": 5, "tokensPerMonth": 10**6, "concurrentRequests": 3})],
        ALICE, PROVIDER, {})
    now = time.time()
    reservation = reserve(limits, Demand(10, 10), now, "lease-a", lease_seconds=30)

    async def scenario() -> None:
        store = RedisCounterStore(redis_server.url)
        try:
            assert (await store.reserve(reservation.charges, now)).admitted
        finally:
            await store.aclose()

    asyncio.run(scenario())
    client = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        expiries = [client.pexpiretime(DEFAULT_PREFIX + c.key) for c in reservation.charges]
    finally:
        client.close()
    assert expiries == [int((window_end(Window.MINUTE, now) + GRACE) * 1000),
                        int((window_end(Window.MONTH, now) + GRACE) * 1000),
                        int((now + 30) * 1000)]


def _wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_keys_vanish_from_redis_when_they_expire(redis_server: RedisServer) -> None:
    key = f"expiring-{uuid.uuid4().hex}"
    now = time.time()

    async def reserve_one() -> None:
        store = RedisCounterStore(redis_server.url)
        try:
            outcome = await store.reserve([Charge(key, 1, 5, now + 0.3),
                                           Charge(key + "-lease", 1, 1, now + 0.3, "l")], now)
            assert outcome.admitted
        finally:
            await store.aclose()

    asyncio.run(reserve_one())
    client = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        assert client.exists(DEFAULT_PREFIX + key) == 1  # positive control
        assert _wait_until(lambda: client.exists(DEFAULT_PREFIX + key,
                                                 DEFAULT_PREFIX + key + "-lease") == 0)
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis"])
def store_factory(request, redis_server: RedisServer):
    if request.param == "memory":
        shared = MemoryCounterStore()
        return lambda: shared
    return lambda: RedisCounterStore(redis_server.url, prefix=f"t-{uuid.uuid4().hex[:8]}:")


def test_both_stores_keep_the_same_books(store_factory) -> None:
    """The contract, on each store: refunds never below zero, extra charges kept, leases
    released and expiring, reads and scans."""
    now = time.time()

    async def scenario() -> None:
        store = store_factory()
        try:
            charges = [Charge("q|a|tokens", 100, 150, now + 60),
                       Charge("q|a|concurrent", 1, 1, now + 5, "lease-1")]
            assert (await store.reserve(charges, now)).used == (100, 1)
            refused = await store.reserve(charges, now)
            assert (refused.admitted, refused.refused, refused.used) == (False, 0, (100, 1))
            again = [Charge("q|a|tokens", 10, 150, now + 60),
                     Charge("q|a|concurrent", 1, 1, now + 5, "lease-2")]
            assert (await store.reserve(again, now)).refused == 1  # the slot is taken
            assert await store.read(["q|a|tokens"], now) == [100]  # and nothing was charged
            await store.settle([Adjustment("q|a|tokens", -250, now + 60),
                                Adjustment("q|a|concurrent", -1, now + 5, "lease-1")], now)
            assert await store.read(["q|a|tokens", "q|a|concurrent", "q|none"], now) == [0, 0, 0]
            assert (await store.reserve(again, now)).used == (10, 1)
            await store.settle([Adjustment("q|a|tokens", 200, now + 60)], now)  # extra charge
            assert await store.scan("q|a|", now) == {"q|a|tokens": 210, "q|a|concurrent": 1}
            # lease-2 is never released: it expires
            assert await store.read(["q|a|concurrent"], now + 6) == [0]
            # a refund to an expired counter, and an extra charge to an expired window, vanish
            await store.settle([Adjustment("q|gone", 5, now - 1), Adjustment("q|gone2", -5,
                                                                               now + 60)], now)
            assert await store.read(["q|gone", "q|gone2"], now) == [0, 0]
            # counts up to the largest limit stay exact (no float spelling such as 1e+15)
            big = 10**15
            assert (await store.reserve([Charge("q|big", big - 1, big, now + 60)], now)).admitted
            await store.settle([Adjustment("q|big", -1, now + 60)], now)
            assert await store.read(["q|big"], now) == [big - 2]
            assert not (await store.reserve([Charge("q|big", 3, big, now + 60)], now)).admitted
        finally:
            await store.aclose()

    asyncio.run(scenario())


def test_a_settlement_once_sent_is_applied_before_what_any_client_sends_after_it(
        redis_server: RedisServer) -> None:
    """The relay answers once its settlement is sent, before Redis confirms it: a caller's
    next request, through another replica (another client), must find it applied. Here a
    concurrency limit of 1: each next lease is admitted only if the last one was released."""
    key = f"q|sent-{uuid.uuid4().hex[:6]}|concurrent"

    async def scenario() -> None:
        relay_a, relay_b = RedisCounterStore(redis_server.url), RedisCounterStore(redis_server.url)
        try:
            stores = (relay_a, relay_b)
            for n in range(40):
                store, other = stores[n % 2], stores[(n + 1) % 2]
                now = time.time()
                charge = Charge(key, 1, 1, now + 30, f"lease-{n}")
                assert (await store.reserve([charge], now)).admitted, n
                sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                confirmed = asyncio.ensure_future(store.settle(
                    [Adjustment(key, -1, now + 30, f"lease-{n}")], now, sent))
                await sent
                outcome = await other.reserve([Charge(key, 1, 1, now + 30, "probe")], now)
                assert outcome.admitted, f"lease {n} was not yet released when sent"
                await confirmed
                await other.settle([Adjustment(key, -1, now + 30, "probe")], now)
        finally:
            await relay_a.aclose()
            await relay_b.aclose()

    asyncio.run(scenario())


def test_the_first_settlement_on_a_fresh_server_is_applied_once_sent(
        own_redis_server: RedisServer) -> None:
    """A fresh (or restarted) server has no scripts: the first settlement must still be
    applied before what another client sends once it is sent (loaded on connect, not on a
    NOSCRIPT reply that comes after the caller went on)."""
    key = "q|fresh|concurrent"

    async def scenario() -> None:
        relay_a = RedisCounterStore(own_redis_server.url)
        relay_b = RedisCounterStore(own_redis_server.url)
        try:
            now = time.time()
            assert (await relay_b.reserve([Charge("q|other", 1, 1, now + 30, "w")], now)).admitted
            assert (await relay_a.reserve([Charge(key, 1, 1, now + 30, "lease")], now)).admitted
            sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            confirmed = asyncio.ensure_future(
                relay_a.settle([Adjustment(key, -1, now + 30, "lease")], now, sent))
            await sent
            outcome = await relay_b.reserve([Charge(key, 1, 1, now + 30, "probe")], now)
            await confirmed
            assert outcome.admitted, "the lease was not yet released when sent"
        finally:
            await relay_a.aclose()
            await relay_b.aclose()

    asyncio.run(scenario())


def test_a_killed_redis_is_one_clear_error_and_a_restarted_one_works_again(
        own_redis_server: RedisServer) -> None:
    limits = applicable_limits([quota(limits={"requestsPerMinute": 100,
                                              "tokensPerMinute": 10_000})], ALICE, PROVIDER, {})

    async def scenario() -> None:
        store = RedisCounterStore(own_redis_server.url, timeout=0.5)
        closed = QuotaGate(store, fail_open=False)
        opened = QuotaGate(store, fail_open=True)
        try:
            admission = await closed.admit(limits, Demand(1, 1))
            assert admission.headers["x-ratelimit-remaining-requests"] == "99"

            own_redis_server.kill()
            with pytest.raises(CounterStoreUnavailable) as down:
                await store.reserve(admission.reservation.charges, time.time())
            assert f"127.0.0.1:{own_redis_server.port}" in str(down.value)
            with pytest.raises(OpenAIError) as refused:
                await closed.admit(limits, Demand(1, 1))
            assert (refused.value.status, refused.value.code) == (503, "quota_unavailable")
            uncounted = await opened.admit(limits, Demand(1, 1))
            assert uncounted.reservation is None and uncounted.headers == {}
            assert not await closed.settle(admission, Demand(5, 5))  # lost, not raised
            sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            assert not await closed.settle(admission, Demand(5, 5), sent)  # the relay's way
            assert sent.done()  # the handler waiting for it goes on

            own_redis_server.start()  # same port, empty (no persistence), no scripts loaded
            again = await closed.admit(limits, Demand(1, 1))
            assert again.headers["x-ratelimit-remaining-requests"] == "99"
            assert again.headers["x-ratelimit-remaining-tokens"] == "9998"
            sent = asyncio.get_running_loop().create_future()  # loaded on the new connection
            assert await closed.settle(again, Demand(5, 5), sent)
            assert sent.done()
            assert await store.read([again.reservation.charges[1].key], time.time()) == [10]
        finally:
            await store.aclose()

    asyncio.run(scenario())


def test_a_frozen_redis_times_out_instead_of_hanging(own_redis_server: RedisServer) -> None:
    pid = own_redis_server.pid
    assert pid is not None

    async def scenario() -> None:
        store = RedisCounterStore(own_redis_server.url, timeout=0.3)
        try:
            assert await store.read(["k"], time.time()) == [0]
            os.kill(pid, signal.SIGSTOP)
            try:
                with pytest.raises(CounterStoreUnavailable):
                    await store.reserve([Charge("k", 1, 5, time.time() + 60)], time.time())
            finally:
                os.kill(pid, signal.SIGCONT)
            assert _wait_until(own_redis_server.alive)
            assert (await store.reserve([Charge("k", 1, 5, time.time() + 60)],
                                        time.time())).admitted
        finally:
            await store.aclose()

    asyncio.run(scenario())


class WithheldReplies:
    """A loopback TCP relay in front of Redis: after :meth:`withhold`, the replies on the
    connections open then never reach the client (a stalled or congested client sees none in
    time); connections opened later are served at once, and commands always go straight
    through."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._open: set[asyncio.StreamWriter] = set()
        self._withheld: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()

    async def __aenter__(self) -> WithheldReplies:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        for writer in self._open:
            writer.close()
        async with asyncio.timeout(5):
            await self._server.wait_closed()

    def withhold(self) -> None:
        self._withheld = set(self._open)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._open.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                       replies: bool) -> None:
            while data := await src.read(65536):
                if replies and writer in self._withheld:
                    await self._closing.wait()
                    return
                dst.write(data)
                await dst.drain()
            dst.close()

        pipes = {asyncio.create_task(pipe(reader, up_writer, False)),
                 asyncio.create_task(pipe(up_reader, writer, True))}
        self._pipes |= pipes
        await asyncio.gather(*pipes, return_exceptions=True)


def test_a_settlement_whose_reply_times_out_is_applied_once(redis_server: RedisServer) -> None:
    """A settlement's reply does not come in time (a relay stalled on a busy node), but Redis
    ran the script: sent again, the refund would be applied twice, and the quota would admit
    more than its limit."""
    key = f"q|once-{uuid.uuid4().hex[:6]}|tokens"

    async def scenario() -> None:
        async with WithheldReplies(redis_server.port) as link:
            store = RedisCounterStore(link.url, timeout=0.2)
            try:
                now = time.time()
                assert (await store.reserve([Charge(key, 300, 10_000, now + 60)], now)).admitted
                link.withhold()
                with pytest.raises(CounterStoreUnavailable, match="settle: TimeoutError"):
                    await store.settle([Adjustment(key, -92, now + 60)], now)
            finally:
                await store.aclose()

    asyncio.run(scenario())
    assert _counter_value(redis_server, key) == 300 - 92


def test_scripts_flushed_under_live_connections_are_loaded_again(
        redis_server: RedisServer) -> None:
    key = f"q|flushed-{uuid.uuid4().hex[:6]}|tokens"

    async def scenario() -> None:
        store = RedisCounterStore(redis_server.url)
        try:
            now = time.time()
            assert (await store.reserve([Charge(key, 300, 10_000, now + 60)], now)).admitted
            with Redis.from_url(redis_server.url) as direct:
                direct.script_flush()
            await store.settle([Adjustment(key, -92, now + 60)], now)  # NOSCRIPT, loaded, sent
            assert (await store.reserve([Charge(key, 8, 10_000, now + 60)], now)).used == (216,)
        finally:
            await store.aclose()

    asyncio.run(scenario())
    assert _counter_value(redis_server, key) == 216


def _counter_value(redis_server: RedisServer, key: str) -> int:
    with Redis.from_url(redis_server.url) as direct:
        return int(direct.get(DEFAULT_PREFIX + key) or 0)


def test_killed_under_load_no_request_hangs_and_counting_resumes(
        own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    limits = applicable_limits([quota(limits={"tokensPerMinute": 10**9})], ALICE, PROVIDER, {})

    async def scenario() -> None:
        store = RedisCounterStore(own_redis_server.url, timeout=0.3)
        gate = QuotaGate(store, fail_open=False)
        outcomes: list[str] = []
        killed, stop = asyncio.Event(), asyncio.Event()

        async def caller() -> None:
            while not stop.is_set():
                try:
                    async with asyncio.timeout(10):  # a hang fails the test, it does not wait
                        admission = await gate.admit(limits, Demand(1, 1))
                    outcomes.append("admitted-after-kill" if killed.is_set() else "admitted")
                    await gate.settle(admission, Demand(1, 0))
                except OpenAIError as exc:
                    assert exc.status == 503
                    outcomes.append("refused")
                await asyncio.sleep(0)

        callers = [asyncio.create_task(caller()) for _ in range(20)]
        try:
            while outcomes.count("admitted") < 100:
                await asyncio.sleep(0.01)
            own_redis_server.kill()
            while outcomes.count("refused") < 20:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(own_redis_server.start)
            killed.set()
            while outcomes.count("admitted-after-kill") < 100:
                await asyncio.sleep(0.01)
        finally:
            stop.set()
            await asyncio.gather(*callers)
            await store.aclose()

    caplog.set_level("WARNING", logger="chatprovider.counters.gate")
    asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    # the outage is logged when it starts and when it ends, not once per refused request
    assert sum("is unavailable" in m for m in messages) == 1, messages
    assert sum("available again" in m for m in messages) == 1


_OPS = st.lists(st.tuples(st.sampled_from(["reserve", "settle"]), st.integers(0, 3),
                          st.integers(-40, 60)), max_size=25)


@given(capacity=st.integers(0, 100), ops=_OPS)
@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_redis_and_memory_give_the_same_answers_to_any_sequence(
        redis_server: RedisServer, capacity: int, ops: list[tuple[str, int, int]]) -> None:
    """The Lua scripts and the reference agree: same admissions, same counters, never above
    the capacity where charged, never negative."""
    now = time.time()
    keys = [f"k{i}" for i in range(4)]

    async def scenario() -> None:
        memory = MemoryCounterStore()
        redis = RedisCounterStore(redis_server.url, prefix=f"eq-{uuid.uuid4().hex[:8]}:")
        try:
            for op, key, amount in ops:
                if op == "reserve":
                    charges = [Charge(keys[key], abs(amount), capacity, now + 60),
                               Charge(keys[(key + 1) % 4], 1, capacity, now + 60)]
                    a = await memory.reserve(charges, now)
                    b = await redis.reserve(charges, now)
                    assert a == b
                    if a.admitted:  # what was charged fits (a zero charge never refuses)
                        assert all(u <= capacity for u, c in zip(a.used, charges, strict=True)
                                   if c.amount)
                else:
                    adjustment = [Adjustment(keys[key], amount, now + 60)]
                    await memory.settle(adjustment, now)
                    await redis.settle(adjustment, now)
                values = await memory.read(keys, now)
                assert values == await redis.read(keys, now)
                assert min(values) >= 0
        finally:
            await redis.aclose()

    asyncio.run(scenario())
