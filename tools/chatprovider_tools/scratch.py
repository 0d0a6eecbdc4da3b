"""A server program of the tests' own (Debian's ``redis-server``, ``tinyproxy``): a child process
in a throw-away directory, ready when its probe answers, stopped within a bound, its directory
removed on :meth:`ScratchServer.close`."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from chatprovider_tools.controlplane.plane import LoggedProcess

__all__ = ["ScratchServer"]


class ScratchServer:
    """Subclasses set ``self.process`` (logging into ``self.workdir``) and ``ready``; ``error``
    is the exception type their failures raise."""

    name = "server"
    error: type[Exception] = RuntimeError

    def __init__(self, prefix: str, start_timeout: float) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=prefix))
        self.start_timeout = start_timeout
        self.process: LoggedProcess | None = None
        self.ready: Callable[[], bool] = lambda: False

    def start(self) -> None:
        """Start, and wait until ``ready()``; raises ``error`` with the log's tail."""
        assert self.process is not None
        self.process.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.ready():
            if not self.process.alive():
                raise self.error(f"{self.name} exited:\n{self.process.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise self.error(f"{self.name} was not ready within"
                                 f" {self.start_timeout:.0f}s:\n{self.process.tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is not None:
            self.process.stop(timeout)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
