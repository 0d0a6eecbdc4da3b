"""Start and stop etcd and kube-apiserver as local processes.

    with ControlPlane() as plane:
        print(plane.kubeconfig)        # admin kubeconfig (static bearer token, system:masters)
        plane.restart()                # stop and start both processes on the same ports and data

Children are started with ``PR_SET_PDEATHSIG`` so that they die with the Python process even when it
is killed with SIGKILL; :meth:`ControlPlane.stop` terminates them gracefully otherwise.
"""

from __future__ import annotations

import ctypes
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import yaml

from chatprovider_tools.controlplane.binaries import Binaries, find_binaries
from chatprovider_tools.controlplane.certs import PlaneCredentials, write_credentials

__all__ = ["ControlPlane", "ControlPlaneError", "die_with_parent", "free_port", "write_kubeconfig"]

_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """The control plane did not start or stopped unexpectedly; the message holds its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the parent's stop() still cleans up
        pass


def write_kubeconfig(path: Path, server: str, ca_cert: Path, token: str, user: str) -> Path:
    """Write a kubeconfig for ``server`` that authenticates with a bearer ``token``."""
    import base64

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "chatprovider-local",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_cert.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": "chatprovider-local",
                "context": {"cluster": "chatprovider-local", "user": user, "namespace": "default"},
            }
        ],
        "current-context": "chatprovider-local",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def terminate(popen: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds: a bounded stop (at most twice
    ``timeout``)."""
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout)


class LoggedProcess:
    """A child process whose output goes to a log file, killed with this process at the
    latest; stopped within a bound (:func:`terminate`)."""

    def __init__(self, name: str, argv: list[str], log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log_path, self.env = name, argv, log_path, env
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(  # noqa: S603 - argv built from our own flags
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, preexec_fn=die_with_parent, start_new_session=True,
            )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is not None:
            terminate(self.popen, timeout)
        self.popen = None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ControlPlane:
    """etcd and kube-apiserver on free loopback ports, with RBAC and service-account tokens."""

    def __init__(
        self,
        binaries: Binaries | None = None,
        workdir: Path | None = None,
        start_timeout: float = 90.0,
    ) -> None:
        self.binaries = binaries or find_binaries()
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="chatprovider-plane-"))
        # etcd's data lives on tmpfs when there is one: fast, and nothing to fsync.
        shm = Path("/dev/shm")
        tmp = shm if shm.is_dir() else None
        self.etcd_dir = Path(tempfile.mkdtemp(prefix="chatprovider-etcd-", dir=tmp))
        self.start_timeout = start_timeout
        self.etcd_port, self.etcd_peer_port, self.api_port = free_port(), free_port(), free_port()
        self.admin_token = secrets.token_urlsafe(32)
        self.creds: PlaneCredentials = write_credentials(self.workdir / "pki")
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.admin_token},admin,admin-uid,"system:masters"\n')
        tokens.chmod(0o600)
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.kubeconfig = write_kubeconfig(
            self.workdir / "kubeconfig", self.server, self.creds.ca_cert, self.admin_token, "admin"
        )
        self._etcd = LoggedProcess("etcd", self._etcd_argv(), self.workdir / "etcd.log")
        self._apiserver = LoggedProcess(
            "kube-apiserver", self._apiserver_argv(tokens), self.workdir / "kube-apiserver.log"
        )
        self.startup_seconds: float | None = None

    # -- command lines ----------------------------------------------------------------------
    def _etcd_argv(self) -> list[str]:
        client = f"http://127.0.0.1:{self.etcd_port}"
        return [
            str(self.binaries.etcd),
            f"--data-dir={self.etcd_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{self.etcd_peer_port}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_argv(self, tokens: Path) -> list[str]:
        c = self.creds
        return [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--cert-dir={self.workdir / 'pki'}",
            f"--tls-cert-file={c.serving_cert}",
            f"--tls-private-key-file={c.serving_key}",
            f"--client-ca-file={c.client_ca_cert}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer=https://127.0.0.1:{self.api_port}",
            f"--service-account-key-file={c.sa_public_key}",
            f"--service-account-signing-key-file={c.sa_private_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--enable-priority-and-fairness=false",
            "--v=1",
        ]

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> ControlPlane:
        began = time.monotonic()
        try:
            self._etcd.start()
            self._wait(self._etcd, f"http://127.0.0.1:{self.etcd_port}/health", tls=False)
            self._apiserver.start()
            self._wait(self._apiserver, f"{self.server}/readyz", tls=True)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop both processes and delete their files (idempotent)."""
        self._apiserver.stop()
        self._etcd.stop()
        shutil.rmtree(self.etcd_dir, ignore_errors=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_processes(self) -> None:
        """Stop the processes but keep ports, data and credentials, for :meth:`start_processes`."""
        self._apiserver.stop()
        self._etcd.stop()

    def start_processes(self) -> None:
        self._etcd.start()
        self._wait(self._etcd, f"http://127.0.0.1:{self.etcd_port}/health", tls=False)
        self._apiserver.start()
        self._wait(self._apiserver, f"{self.server}/readyz", tls=True)

    def restart(self) -> None:
        """Stop and start etcd and kube-apiserver with the same ports, data and credentials."""
        self.stop_processes()
        self.start_processes()

    def alive(self) -> bool:
        return self._etcd.alive() and self._apiserver.alive()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- helpers -----------------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.creds.ca_cert))

    def _wait(self, proc: LoggedProcess, url: str, tls: bool) -> None:
        deadline = time.monotonic() + self.start_timeout
        headers = {"Authorization": f"Bearer {self.admin_token}"} if tls else {}
        context = self.ssl_context() if tls else None
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not proc.alive():
                raise ControlPlaneError(
                    f"{proc.name} exited during start-up; last log lines:\n{proc.tail()}"
                )
            try:
                req = urllib.request.Request(url, headers=headers)
                with urllib.request.urlopen(req, timeout=2, context=context) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise ControlPlaneError(
            f"{proc.name} not ready at {url} after {self.start_timeout:.0f}s ({last}); "
            f"last log lines:\n{proc.tail()}"
        )

    def env(self) -> dict[str, str]:
        """Environment variables that point kubectl and client libraries at this plane."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def pids(self) -> list[int]:
        return [p.popen.pid for p in (self._etcd, self._apiserver) if p.popen is not None]


