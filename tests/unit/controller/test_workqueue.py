"""The work queue keeps client-go's promises, on a clock driven by hand: a key is waiting,
queued or running, never twice; a change during a run runs it once more afterwards."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatprovider.controller.workqueue import KeyState, WorkQueue


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def queue(clock: Clock) -> WorkQueue[str]:
    return WorkQueue(clock)


def test_a_key_added_twice_is_queued_once(queue) -> None:
    queue.add("a")
    queue.add("a")
    assert len(queue) == 1
    assert queue.take() == "a"
    assert queue.take() is None


def test_a_delayed_key_is_due_only_at_its_time_and_the_earlier_add_wins(queue, clock) -> None:
    queue.add("a", 30)
    queue.add("a", 60)  # later: ignored
    assert queue.state("a") is KeyState.WAITING and queue.next_due() == 1030.0
    queue.add("a", 10)  # earlier: wins
    assert queue.next_due() == 1010.0
    clock.t = 1009.9
    assert queue.take() is None
    clock.t = 1010.0
    assert queue.take() == "a" and queue.take() is None  # the superseded entries are gone


def test_keys_come_out_in_due_order(queue, clock) -> None:
    queue.add("late", 5)
    queue.add("soon", 1)
    queue.add("now")
    clock.t += 10
    assert [queue.take(), queue.take(), queue.take()] == ["now", "soon", "late"]


def test_a_key_added_while_it_runs_is_not_taken_again_until_done(queue) -> None:
    queue.add("a")
    assert queue.take() == "a"
    queue.add("a")  # a spec change during the check
    queue.add("a")
    assert queue.state("a") is KeyState.RUNNING
    assert queue.take() is None  # never twice at once
    queue.done("a", again_after=300)
    assert queue.take() == "a"  # once more, at once (the dirty mark beats the interval)
    queue.done("a")
    assert queue.state("a") is KeyState.IDLE


def test_done_schedules_the_next_run(queue, clock) -> None:
    queue.add("a")
    queue.take()
    queue.done("a", again_after=300)
    assert queue.state("a") is KeyState.WAITING and queue.next_due() == 1300.0
    queue.add("a")  # a change before it is due: now
    assert queue.take() == "a"


def test_a_delayed_add_while_running_keeps_the_earlier_time(queue, clock) -> None:
    queue.add("a")
    queue.take()
    queue.add("a", 50)
    queue.done("a", again_after=20)
    assert queue.next_due() == 1020.0


def test_a_forgotten_key_is_not_run_again(queue) -> None:
    queue.add("a", 10)
    queue.forget("a")
    assert queue.state("a") is KeyState.IDLE and queue.next_due() is None
    queue.add("b")
    queue.take()
    queue.forget("b")  # deleted while its check runs
    queue.done("b", again_after=0)
    assert queue.state("b") is KeyState.IDLE and len(queue) == 0


def test_a_forgotten_running_key_that_comes_back_runs_again(queue) -> None:
    queue.add("a")
    queue.take()
    queue.forget("a")
    queue.add("a")  # deleted and created again during the check
    queue.done("a")
    assert queue.take() == "a"


@given(st.lists(st.tuples(st.sampled_from(["add", "add_later", "take", "done", "forget",
                                           "tick"]),
                          st.sampled_from("abc")), max_size=60))
def test_no_key_is_ever_running_twice_or_both_running_and_queued(ops) -> None:
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(clock)
    running: set[str] = set()
    for op, key in ops:
        if op == "add":
            queue.add(key)
        elif op == "add_later":
            queue.add(key, 5)
        elif op == "take":
            taken = queue.take()
            if taken is not None:
                assert taken not in running
                running.add(taken)
        elif op == "done" and key in running:
            running.discard(key)
            queue.done(key, again_after=3)
        elif op == "forget":
            queue.forget(key)
        elif op == "tick":
            clock.t += 2
        for k in "abc":
            state = queue.state(k)
            assert (state is KeyState.RUNNING) == (k in running)
    assert queue.running == len(running)


def test_get_waits_for_the_due_time_and_wakes_on_add() -> None:
    clock = Clock()

    async def main() -> list[str | None]:
        queue: WorkQueue[str] = WorkQueue(clock)
        got: list[str | None] = []

        async def worker() -> None:
            while (key := await queue.get()) is not None:
                got.append(key)
                queue.done(key)

        task = asyncio.create_task(worker())
        queue.add("later", 3600)  # would wait an hour on this clock: only an add wakes it
        await asyncio.sleep(0)
        queue.add("now")
        while not got:
            await asyncio.sleep(0)
        queue.shut_down()
        await task
        return got

    assert asyncio.run(main()) == ["now"]
