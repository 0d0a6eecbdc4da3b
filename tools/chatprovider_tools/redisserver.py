"""A throw-away ``redis-server`` on a loopback port, for tests and benchmarks.

Debian's ``redis-server`` (``scripts/install-servers.sh``), without persistence, in its own
directory, started and stopped within bounds. :meth:`RedisServer.kill` (SIGKILL) and
:meth:`RedisServer.start` again on the same port reproduce a crash and a restart.
"""

from __future__ import annotations

import shutil
import socket

from chatprovider_tools.controlplane.plane import LoggedProcess, free_port
from chatprovider_tools.scratch import ScratchServer

__all__ = ["RedisServer", "RedisServerError", "find_redis_server"]


class RedisServerError(RuntimeError):
    """redis-server is missing, or did not start."""


def find_redis_server() -> str:
    """The path of ``redis-server``; raises RedisServerError saying how to install it."""
    path = shutil.which("redis-server")
    if path is None:
        raise RedisServerError("redis-server is not installed: run `make setup`"
                               " (scripts/install-servers.sh)")
    return path


def _ping(port: int, timeout: float = 0.5, password: str | None = None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            if password is not None:
                sock.sendall(f"AUTH {password}\r\n".encode())
                if not sock.recv(16).startswith(b"+OK"):
                    return False
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(ScratchServer):
    """``redis-server`` on 127.0.0.1, no persistence, stopped within ``stop_timeout``; with
    ``password``, it requires it (``requirepass``)."""

    name = "redis-server"
    error = RedisServerError

    def __init__(self, port: int | None = None, start_timeout: float = 20.0,
                 password: str | None = None) -> None:
        super().__init__("chatprovider-redis-", start_timeout)
        self.binary = find_redis_server()
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.password = password
        self.process = self._process = LoggedProcess("redis-server", [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning",
            *(("--requirepass", password) if password is not None else ()),
        ], self.workdir / "redis.log")
        self.ready = lambda: _ping(self.port, password=self.password)

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (to freeze it with SIGSTOP, say)."""
        popen = self._process.popen
        return popen.pid if popen is not None and popen.poll() is None else None

    def alive(self) -> bool:
        return self._process.alive() and _ping(self.port, password=self.password)

    def kill(self) -> None:
        """SIGKILL, as a crash; returns when the process is gone."""
        popen = self._process.popen
        if popen is not None and popen.poll() is None:
            popen.kill()
            popen.wait(10)
        self._process.popen = None
