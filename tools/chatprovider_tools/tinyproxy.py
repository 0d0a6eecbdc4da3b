"""A throw-away ``tinyproxy`` on a loopback port: the forward proxy of the relay's ``spec.proxy``
tests.

Debian's ``tinyproxy`` (``scripts/install-servers.sh``), in its own directory with its own
configuration, in the foreground, started and stopped within bounds. Its log names every
request it carried (``requests()``): absolute-form ``POST http://...`` for ``http://`` targets,
``CONNECT host:port`` for ``https://`` ones. ``connect_ports`` limits the ports it tunnels to
(the others are refused with 403), as proxies in front of the internet usually do.
"""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from chatprovider_tools.controlplane.plane import LoggedProcess, free_port

__all__ = ["TinyProxy", "TinyProxyError", "find_tinyproxy"]

_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+ \S+) HTTP/")


class TinyProxyError(RuntimeError):
    """tinyproxy is missing, or did not start."""


def find_tinyproxy() -> str:
    """The path of ``tinyproxy``; raises TinyProxyError saying how to install it."""
    path = shutil.which("tinyproxy") or ("/usr/bin/tinyproxy"
                                         if Path("/usr/bin/tinyproxy").exists() else None)
    if path is None:
        raise TinyProxyError("tinyproxy is not installed: run `make setup`"
                             " (scripts/install-servers.sh)")
    return path


class TinyProxy:
    """``tinyproxy`` on 127.0.0.1, accepting loopback clients only, stopped within
    ``stop_timeout``; ``url`` is what ``spec.proxy.url`` names."""

    def __init__(self, *, connect_ports: Sequence[int] = (), start_timeout: float = 20.0) -> None:
        self.binary = find_tinyproxy()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(tempfile.mkdtemp(prefix="chatprovider-tinyproxy-"))
        self.start_timeout = start_timeout
        self.log_path = self.workdir / "tinyproxy.log"
        config = self.workdir / "tinyproxy.conf"
        config.write_text("\n".join([
            f"Port {self.port}", "Listen 127.0.0.1", "Timeout 30", "MaxClients 64",
            "Allow 127.0.0.1", "DisableViaHeader Yes", "LogLevel Info",
            f'LogFile "{self.log_path}"', f'PidFile "{self.workdir / "tinyproxy.pid"}"',
            *(f"ConnectPort {p}" for p in connect_ports),
        ]) + "\n")
        self._process = LoggedProcess("tinyproxy", [self.binary, "-d", "-c", str(config)],
                                      self.workdir / "stdout.log")

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        self._process.start()
        deadline = time.monotonic() + self.start_timeout
        while not _accepts(self.port):
            if not self._process.alive():
                raise TinyProxyError(f"tinyproxy exited:\n{self._process.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TinyProxyError(f"tinyproxy did not listen within"
                                     f" {self.start_timeout:.0f}s:\n{self._process.tail()}")
            time.sleep(0.05)

    def requests(self) -> list[str]:
        """The request lines it received, in order (``"CONNECT 127.0.0.1:8443"``, ...)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return _REQUEST.findall(text)

    def stop(self, timeout: float = 5.0) -> None:
        self._process.stop(timeout)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> TinyProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
