"""``serve`` runs the command's main coroutine on the chosen event loop until told to stop."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from chatprovider.cli.run import serve


@pytest.mark.parametrize(("choice", "loop_type"), [
    ("uvloop", uvloop.Loop),
    ("asyncio", asyncio.BaseEventLoop),
])
def test_serve_runs_main_on_the_chosen_loop(choice: str, loop_type: type) -> None:
    seen: list[object] = []

    async def main(stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        seen.append(loop)
        loop.call_soon(stop.set)  # what SIGTERM does
        await stop.wait()

    serve(main, choice)
    assert len(seen) == 1 and isinstance(seen[0], loop_type)
    if choice == "asyncio":
        assert not isinstance(seen[0], uvloop.Loop)
