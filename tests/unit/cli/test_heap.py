"""Once ready, a process's heap loaded at start is frozen out of the garbage collector's walks
(the pauses of full collections set the relay's tail latency), and not before.

Each case runs in a fresh interpreter: freezing is process-wide, and the one collection it does
would walk the whole test session's heap."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any


def _in_a_process(code: str) -> Any:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_the_heap_is_frozen_once_ready_and_not_before() -> None:
    seen = _in_a_process("""
        import asyncio, gc, json
        from chatprovider.cli.heap import freeze_when_ready
        checks = []
        def ready():
            checks.append(gc.get_freeze_count())
            return len(checks) >= 3
        frozen = asyncio.run(freeze_when_ready(ready, interval=0))
        later = [object()]  # allocated after: not frozen, so still collected
        print(json.dumps({"checks": checks, "frozen": frozen, "now": gc.get_freeze_count(),
                          "later_collected": any(o is later for o in gc.get_objects())}))
    """)
    assert seen["checks"] == [0, 0, 0]  # nothing frozen while not ready
    assert seen["frozen"] > 0 and seen["now"] > 0
    assert seen["later_collected"]


def test_serve_freezes_when_the_app_is_ready() -> None:
    seen = _in_a_process("""
        import asyncio, gc, json
        from chatprovider.cli.run import serve
        state = {"ready": False, "before": -1, "after": 0}
        async def main(stop):
            await asyncio.sleep(0)
            state["before"] = gc.get_freeze_count()
            state["ready"] = True
            async with asyncio.timeout(30):  # a bound on a regression, not a timing assertion
                while gc.get_freeze_count() == 0:
                    await asyncio.sleep(0.01)
            state["after"] = gc.get_freeze_count()
        serve(main, "asyncio", ready=lambda: state["ready"])
        print(json.dumps(state))
    """)
    assert seen["before"] == 0 and seen["after"] > 0


def test_a_process_that_stops_before_it_is_ready_is_not_frozen() -> None:
    seen = _in_a_process("""
        import asyncio, gc, json
        from chatprovider.cli.run import serve
        async def main(stop):
            await asyncio.sleep(0.05)
        serve(main, "asyncio", ready=lambda: False)
        print(json.dumps({"frozen": gc.get_freeze_count()}))
    """)
    assert seen["frozen"] == 0


def test_a_readiness_check_that_fails_is_logged_and_does_not_stop_the_process() -> None:
    seen = _in_a_process("""
        import asyncio, gc, io, json, logging
        from chatprovider.cli.run import serve
        stream = io.StringIO()
        logging.basicConfig(stream=stream, level=logging.INFO)
        def ready():
            raise RuntimeError("broken check")
        async def main(stop):
            await asyncio.sleep(0.05)
        serve(main, "asyncio", ready=ready)
        print(json.dumps({"frozen": gc.get_freeze_count(), "log": stream.getvalue()}))
    """)
    assert seen["frozen"] == 0
    assert "the heap was not frozen: RuntimeError" in seen["log"]
