"""Processes under test: started in their own session, optionally pinned to CPUs, logged to a
file, waited for, measured (RSS, CPU time) and stopped with their whole process group."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Proc", "cpu_seconds", "free_port", "rss_mib", "wait_http"]

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (0 if it is gone)."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * PAGE / 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by ``pid`` (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _die_with_parent() -> None:
    """SIGTERM this child when the bench dies, however it dies (Linux only)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def wait_http(url: str, timeout: float, proc: Proc | None = None,
              headers: dict[str, str] | None = None) -> float:
    """Poll ``url`` until it answers 2xx; returns the seconds waited."""
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < timeout:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.returncode}):\n{proc.tail()}")
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310 - loopback
                if 200 <= resp.status < 300:
                    return time.monotonic() - started
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    tail = proc.tail() if proc is not None else ""
    raise RuntimeError(f"{url} not ready after {timeout:.0f}s ({last})\n{tail}")


@dataclass
class Proc:
    """One started process (the leader of its own process group)."""

    name: str
    argv: Sequence[str]
    log: Path
    cpus: set[int] | None = None
    env: dict[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Proc:
        cpus = self.cpus

        def setup() -> None:  # in the child, before exec: every thread inherits the mask
            if cpus:
                os.sched_setaffinity(0, cpus)
            _die_with_parent()

        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(  # noqa: S603 - argv built by the bench
                list(self.argv), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd,
                start_new_session=True, preexec_fn=setup,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def rss(self) -> float:
        """RSS of the whole process group (nginx: master + worker), MiB."""
        return sum(rss_mib(pid) for pid in self.group())

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.group())

    def group(self) -> list[int]:
        if not self.alive():
            return []
        pids = [self.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != self.pid:
                try:
                    if os.getpgid(int(entry.name)) == self.pid:
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return pids

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the group, wait, then SIGKILL what is left."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait(timeout)
