"""A port that is already taken, said in one line before anything starts.

``chatprovider run``, ``relay`` and ``up`` each check the ports they will listen on before they
start anything, and exit with one line naming the port and the flag that changes it (exit code
1, no traceback). A port taken between the check and the bind is reported the same way by
:func:`explain_bind_errors`.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator

import click

__all__ = ["PortInUse", "ensure_free", "explain_bind_errors"]


class PortInUse(click.ClickException):
    """A port this command would listen on is taken (exit code 1)."""

    def __init__(self, host: str, port: int, flag: str) -> None:
        super().__init__(f"port {port} on {host} is already in use (another chatprovider, or "
                         f"another server?): stop it, or choose another port with {flag} PORT "
                         "(0 picks a free one)")
        self.host, self.port, self.flag = host, port, flag


def ensure_free(host: str, port: int, flag: str) -> None:
    """Raise :class:`PortInUse` when ``host:port`` cannot be listened on now. Binds the way the
    servers do (``SO_REUSEADDR``: a port left in TIME_WAIT is free); port 0 is always free."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(host, port, flag) from None
            raise


@contextlib.contextmanager
def explain_bind_errors(*flags: str) -> Iterator[None]:
    """Turn an "address already in use" raised while serving into one line naming ``flags``."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise click.ClickException(
            f"{exc.strerror or exc}: a port is already in use; choose others with "
            f"{' or '.join(flags)}") from None
