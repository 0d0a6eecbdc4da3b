"""Once ready, a process's heap loaded at start is frozen out of the garbage collector's walks
(the pauses of full collections set the relay's tail latency), and not before."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from chatprovider.cli.heap import freeze_when_ready
from chatprovider.cli.run import serve


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process keeps its collector as it was


def test_the_heap_is_frozen_once_ready_and_not_before() -> None:
    checks: list[int] = []

    def ready() -> bool:
        checks.append(gc.get_freeze_count())
        return len(checks) >= 3

    frozen = asyncio.run(freeze_when_ready(ready, interval=0))
    assert checks == [0, 0, 0]  # nothing frozen while not ready
    assert frozen > 0 and gc.get_freeze_count() > 0
    later = [object()]  # allocated after: not frozen, so still collected
    assert any(o is later for o in gc.get_objects())


def test_serve_freezes_when_the_app_is_ready() -> None:
    state = {"ready": False, "frozen_at_stop": 0}

    async def main(stop: asyncio.Event) -> None:
        await asyncio.sleep(0)
        assert gc.get_freeze_count() == 0
        state["ready"] = True
        async with asyncio.timeout(30):  # a bound on a regression, not a timing assertion
            while gc.get_freeze_count() == 0:
                await asyncio.sleep(0.01)
        state["frozen_at_stop"] = gc.get_freeze_count()

    serve(main, "asyncio", ready=lambda: bool(state["ready"]))
    assert state["frozen_at_stop"] > 0


def test_a_process_that_stops_before_it_is_ready_is_not_frozen() -> None:
    async def main(stop: asyncio.Event) -> None:
        await asyncio.sleep(0.05)

    serve(main, "asyncio", ready=lambda: False)
    assert gc.get_freeze_count() == 0


def test_a_readiness_check_that_fails_is_logged_and_does_not_stop_the_process(caplog) -> None:
    def ready() -> bool:
        raise RuntimeError("broken check")

    async def main(stop: asyncio.Event) -> None:
        await asyncio.sleep(0.05)

    serve(main, "asyncio", ready=ready)
    assert gc.get_freeze_count() == 0
    assert "the heap was not frozen: RuntimeError" in caplog.text
