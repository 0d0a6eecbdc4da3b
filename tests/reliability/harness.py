"""Tools of the reliability suite: processes to kill, proxies that black-hole, raw upstreams,
stub resolvers, and /proc readings. Loopback only; everything stops by itself."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from chatprovider_tools.controlplane.plane import free_port

CHATPROVIDER = Path(sys.executable).parent / "chatprovider"
API = ("ai.chatprovider.dev", "v1alpha1")


# -- /proc ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcStats:
    rss_kb: int
    hwm_kb: int
    fds: int
    threads: int

    @property
    def rss_mb(self) -> float:
        return self.rss_kb / 1024


def proc_stats(pid: int | None = None) -> ProcStats:
    """Resident memory (now and peak), open file descriptors and threads of a process."""
    base = Path(f"/proc/{pid or os.getpid()}")
    fields: dict[str, int] = {}
    for line in (base / "status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "Threads"):
            fields[name] = int(value.split()[0])
    return ProcStats(fields["VmRSS"], fields["VmHWM"], len(os.listdir(base / "fd")),
                     fields["Threads"])


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# -- the operator (or relay) as a process -------------------------------------------------------
class ChatproviderProcess:
    """``chatprovider run`` (or ``relay``) as a subprocess; stderr goes to a file we can read."""

    def __init__(self, kubeconfig: Path | str, log: Path, *, command: str = "run",
                 namespaces: Iterable[str] = (), relay_port: int | None = None,
                 relay_auth: str = "none", log_level: str = "INFO",
                 extra: Iterable[str] = (), lease: str | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        """``lease``: the Lease name (``run``); by default one of its own, so that operators of
        other tests never share (or wait for) its leadership. ``env``: added to the
        environment (``POD_ID`` names the replica in the Lease)."""
        self.env = dict(env or {})
        self.relay_port = relay_port if relay_port is not None else free_port()
        self.log = log
        self.argv = [str(CHATPROVIDER), command, f"--kubeconfig={kubeconfig}",
                     "--relay-host=127.0.0.1", f"--relay-port={self.relay_port}",
                     f"--relay-auth={relay_auth}", f"--log-level={log_level}",
                     *(f"--namespace={ns}" for ns in namespaces), *extra]
        if command == "run":
            self.argv += ["--health-port=0",
                          f"--lease-name={lease or 'test-' + uuid.uuid4().hex[:12]}"]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.relay_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, wait_ready: bool = True) -> ChatproviderProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPROVIDER_")}
        env.pop("KUBECONFIG", None)
        env.update(self.env)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, preexec_fn=_die_with_parent)
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready after {timeout}s:\n{self.tail()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"did not stop within {timeout}s:\n{self.tail()}") from None

    def stats(self) -> ProcStats:
        return proc_stats(self.pid)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, chars: int = 4000) -> str:
        return self.text()[-chars:]


# -- an event loop in a thread ----------------------------------------------------------------
class LoopThread:
    """An asyncio loop in a daemon thread, for servers that tests drive synchronously."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore

    def call(self, fn: Callable[[], Any]) -> Any:
        async def wrapper() -> Any:
            return fn()
        return self.run(wrapper())

    def close(self) -> None:
        async def cancel_rest() -> None:
            current = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not current]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            await asyncio.sleep(0.05)  # closed transports finish closing

        try:
            self.run(cancel_rest(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


# -- a TCP proxy that can black-hole ----------------------------------------------------------
class BlackholeProxy:
    """Forwards 127.0.0.1:<port> to ``target``. :meth:`blackhole` freezes every connection open
    at that moment: bytes in both directions are swallowed, nothing is closed (a NAT or load
    balancer that lost the flow). New connections are forwarded normally."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._lt = LoopThread("blackhole-proxy")
        self._frozen: set[int] = set()
        self._writers: dict[int, list[asyncio.StreamWriter]] = {}
        self._ids = 0
        self.accepted = 0
        self._server: asyncio.AbstractServer = self._lt.run(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._ids += 1
        cid = self._ids
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers[cid] = [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if cid in self._frozen:
                        continue  # swallowed
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                if cid not in self._frozen:
                    dst.close()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            self._writers.pop(cid, None)
            writer.close()
            up_writer.close()

    def blackhole(self) -> int:
        """Freeze every open connection; returns how many."""
        def freeze() -> int:
            self._frozen.update(self._writers)
            return len(self._writers)
        return int(self._lt.call(freeze))

    @property
    def open_connections(self) -> int:
        return int(self._lt.call(lambda: len(self._writers)))

    def close(self) -> None:
        def shut() -> None:
            self._server.close()
            for pair in self._writers.values():
                for w in pair:
                    w.close()
        self._lt.call(shut)
        self._lt.close()


# -- raw upstreams ----------------------------------------------------------------------------
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A tiny asyncio TCP server speaking hand-written HTTP/1.1, for what aiohttp would not
    send: events split across packets, huge bodies, redirects, silence."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1") -> None:
        self._lt = LoopThread("raw-upstream")
        self.connections = 0
        self.requests: list[bytes] = []
        self.cancelled = 0
        self._handler = handler
        self._server: asyncio.AbstractServer = self._lt.run(
            asyncio.start_server(self._handle, host, 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.host = host

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await read_request(reader)
            self.requests.append(head)
            await self._handler(reader, writer)
        except (ConnectionError, OSError):
            self.cancelled += 1
        finally:
            writer.close()

    def close(self) -> None:
        self._lt.call(self._server.close)
        self._lt.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """Read one request (head and Content-Length body); returns the head."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return head


def http_head(status: int, content_type: str, extra: dict[str, str] | None = None,
              length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def sse_chunk(content: str, index: int = 0) -> bytes:
    payload = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 0,
               "model": "m", "choices": [{"index": index, "delta": {"content": content},
                                          "finish_reason": None}]}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


# -- a stub DNS ---------------------------------------------------------------------------------
@dataclass
class StubDNS:
    """Names this test controls. ``answers[name]`` is a list of address lists: each resolution
    takes the next (the last one repeats), which is how a rebinding attacker behaves."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def resolver(self) -> StubResolver:
        return StubResolver(self)


class StubResolver(AbstractResolver):
    """Answers the stub's names; asks the system resolver for every other name."""

    def __init__(self, dns: StubDNS) -> None:
        self._dns = dns
        self._system = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self._dns.calls.append(host)
        plan = self._dns.answers.get(host)
        if not plan:
            return await self._system.resolve(host, port, family)
        addresses = plan.pop(0) if len(plan) > 1 else plan[0]
        return [ResolveResult(hostname=host, host=a, port=port,
                              family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST) for a in addresses]

    async def close(self) -> None:
        await self._system.close()


# -- a listener that must never be reached ------------------------------------------------------
class Trap:
    """Counts TCP connections to ``host:port``: the address a test must never connect to."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.hits = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="trap")
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
