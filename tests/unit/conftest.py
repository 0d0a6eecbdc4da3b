"""The unit tier's two rules, enforced: a unit test opens no network socket, and it takes at
most 0.5 s of CPU (CPU, not wall-clock time, so that a loaded machine cannot fail it; the CPU
of the test's own thread, so that threads other tests left in this process, such as a session's
servers, are not charged to it)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import find
from hypothesis import strategies as st

CPU_BUDGET = 0.5
_NETWORK = (socket.AF_INET, socket.AF_INET6)


def _guarded(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def guard(self: socket.socket, *args: Any, **kwargs: Any) -> Any:
        if self.family in _NETWORK:
            raise RuntimeError(f"unit tests open no network socket (socket.{name}): this test "
                               "belongs in tests/integration")
        return original(self, *args, **kwargs)
    return guard


@pytest.fixture(scope="session", autouse=True)
def _hypothesis_tables() -> None:
    """Hypothesis builds its table of Unicode characters the first time a test draws text (1.5 s
    of CPU in a fresh clone, where ``.hypothesis/`` does not exist yet); built here, before any
    test, that one-time cost is charged to no test's budget."""
    find(st.text(min_size=1), lambda _: True)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, _guarded(name, getattr(socket.socket, name)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    start = time.thread_time()
    result = yield
    used = time.thread_time() - start
    if used > CPU_BUDGET:
        pytest.fail(f"a unit test takes at most {CPU_BUDGET} s of CPU; this one took {used:.2f} s",
                    pytrace=False)
    return result
