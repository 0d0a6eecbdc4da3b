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
from collections.abc import Sequence
from pathlib import Path

from chatprovider_tools.controlplane.plane import LoggedProcess, free_port
from chatprovider_tools.scratch import ScratchServer

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


class TinyProxy(ScratchServer):
    """``tinyproxy`` on 127.0.0.1, accepting loopback clients only, stopped within
    ``stop_timeout``; ``url`` is what ``spec.proxy.url`` names."""

    name = "tinyproxy"
    error = TinyProxyError

    def __init__(self, *, connect_ports: Sequence[int] = (), start_timeout: float = 20.0) -> None:
        super().__init__("chatprovider-tinyproxy-", start_timeout)
        self.binary = find_tinyproxy()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "tinyproxy.log"
        config = self.workdir / "tinyproxy.conf"
        config.write_text("\n".join([
            f"Port {self.port}", "Listen 127.0.0.1", "Timeout 30", "MaxClients 64",
            "Allow 127.0.0.1", "DisableViaHeader Yes", "LogLevel Info",
            f'LogFile "{self.log_path}"', f'PidFile "{self.workdir / "tinyproxy.pid"}"',
            *(f"ConnectPort {p}" for p in connect_ports),
        ]) + "\n")
        self.process = LoggedProcess("tinyproxy", [self.binary, "-d", "-c", str(config)],
                                     self.workdir / "stdout.log")
        self.ready = lambda: _accepts(self.port)

    def requests(self) -> list[str]:
        """The request lines it received, in order (``"CONNECT 127.0.0.1:8443"``, ...)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return _REQUEST.findall(text)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
