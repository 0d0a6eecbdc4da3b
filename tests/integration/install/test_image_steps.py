"""The image's install steps, reproduced without Docker: the build context (.dockerignore's
allow-list) → ``pip wheel --no-deps`` → a venv without pip → both commands, started as the
image's non-root user 65532 against the real API server.

This is what the Dockerfile's build stage runs; a Docker build itself is exercised by
``scripts/kind-e2e.sh`` where Docker exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatprovider_tools.controlplane.plane import free_port

from .conftest import NONROOT, ROOT, missing, wait_http

PIP_ENV = {
    **os.environ,
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_CACHE_DIR": str(Path(os.environ.get("CHATPROVIDER_CACHE",
                                             Path.home() / ".cache" / "chatprovider")) / "pip"),
}


class Image:
    """A directory laid out like the image: /opt/chatprovider is ``venv``."""

    def __init__(self, root: Path, wheel: Path, venv: Path, seconds: dict[str, float]) -> None:
        self.root, self.wheel, self.venv, self.seconds = root, wheel, venv, seconds

    def as_user(self, *argv: str, pod: str | None = None) -> list[str]:
        """argv run as the image's user, with the image's environment (nothing inherited);
        ``pod`` adds what the chart adds: POD_ID, kopf's identity, from the pod's name (this
        machine has no passwd entry for uid 65532, unlike the image)."""
        env = ["env", "-i", f"PATH={self.venv / 'bin'}:/usr/bin:/bin", f"HOME={self.root}",
               "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"]
        if pod is not None:
            env.append(f"POD_ID={pod}")
        if os.geteuid() != 0:  # already unprivileged: nothing to drop
            return [*env, *argv]
        return ["setpriv", f"--reuid={NONROOT}", f"--regid={NONROOT}", "--clear-groups",
                *env, *argv]


def _context(into: Path) -> Path:
    """The Docker build context: what .dockerignore lets through."""
    into.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, into / name)
    shutil.copytree(ROOT / "operator", into / "operator",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return into


def _reachable_by_everyone(path: Path) -> bool:
    """Whether any user may execute ``path`` (every directory on the way searchable)."""
    path = path.resolve()
    dirs_ok = all(p.stat().st_mode & 0o001 for p in path.parents)
    return path.is_file() and dirs_ok and bool(path.stat().st_mode & 0o001)


def _base_python() -> Path | None:
    """A Python 3.11 interpreter (the image's) that the image's user may run, to base the venv
    on: the dev venv's own interpreter may live under a private home (pyenv in /root)."""
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [Path(sys.base_prefix) / "bin" / minor, Path("/usr/local/bin") / "python3.11",
                  Path("/usr/bin") / "python3.11"]
    if os.geteuid() != 0:
        return candidates[0]
    return next((c for c in candidates if c.exists() and _reachable_by_everyone(c)), None)


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    python = _base_python()
    if python is None:
        missing("a Python 3.11 that user 65532 may run", "apt-get install python3.11-venv")
    root = Path(tempfile.mkdtemp(prefix="chatprovider-image-"))
    root.chmod(0o755)  # the non-root user reads the venv, as in the image
    seconds: dict[str, float] = {}
    try:
        context = _context(root / "src")
        wheels = root / "wheels"
        venv = root / "venv"
        began = time.monotonic()
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--wheel-dir", str(wheels), str(context)],
                       check=True, env=PIP_ENV, timeout=300, cwd=context)
        seconds["wheel"] = time.monotonic() - began
        [wheel] = wheels.glob("*.whl")
        began = time.monotonic()
        subprocess.run([str(python), "-m", "venv", "--without-pip", str(venv)], check=True,
                       timeout=60)
        subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                        "install", "-q", "--only-binary=:all:", str(wheel)],
                       check=True, env=PIP_ENV, timeout=300)
        seconds["install"] = time.monotonic() - began
        print(f"\nimage steps: wheel {seconds['wheel']:.1f}s, venv+install "
              f"{seconds['install']:.1f}s")
        yield Image(root, wheel, venv, seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_wheel_holds_the_package_and_nothing_else(image: Image) -> None:
    names = zipfile.ZipFile(image.wheel).namelist()
    assert "chatprovider/py.typed" in names
    assert "chatprovider/cli/main.py" in names
    # the workshop (dev server, control plane, generators, demo) is not part of the product
    assert not [n for n in names if n.startswith("chatprovider_tools/")]
    assert not [n for n in names if "/devserver/" in n or "/controlplane/" in n]
    tops = {n.split("/", 1)[0] for n in names}
    assert all(t == "chatprovider" or t.endswith(".dist-info") for t in tops), tops
    # every data file of the package (py.typed, the playground's static files) ships too
    source = ROOT / "operator"
    data = {p.relative_to(source).as_posix() for p in (source / "chatprovider").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert data <= set(names), sorted(data - set(names))


def test_the_venv_has_no_installer(image: Image) -> None:
    bin_dir = image.venv / "bin"
    assert (bin_dir / "chatprovider").is_file()
    assert not (bin_dir / "pip").exists()
    site = next(image.venv.glob("lib/python3*/site-packages"))
    assert not list(site.glob("pip")), "pip must not be in the image's venv"


@pytest.mark.parametrize("argv", [
    ["chatprovider", "--help"],
    ["chatprovider", "run", "--help"],
    ["chatprovider", "relay", "--help"],
], ids=lambda a: " ".join(a[1:]))
def test_commands_answer_help_as_the_image_user(image: Image, argv: list[str]) -> None:
    proc = subprocess.run(image.as_user(*argv), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout or "usage:" in proc.stdout


def _user_kubeconfig(image: Image, kubeconfig: Path) -> Path:
    """A copy of the admin kubeconfig (CA embedded) that only the image's user can read."""
    path = image.root / f"kubeconfig-{free_port()}"
    shutil.copy(kubeconfig, path)
    if os.geteuid() == 0:
        os.chown(path, NONROOT, NONROOT)
    path.chmod(0o600)
    return path


def _uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def test_the_relay_starts_as_the_image_user(image: Image, kubeconfig: Path, chatprovider_crd,
                                            processes, tmp_path: Path) -> None:
    port = free_port()
    relay = processes(image.as_user(
        "chatprovider", "relay", "--kubeconfig", str(_user_kubeconfig(image, kubeconfig)),
        "--relay-host", "127.0.0.1", "--relay-port", str(port), pod="relay-0"),
        tmp_path / "relay.log")
    began = time.monotonic()
    wait_http(f"http://127.0.0.1:{port}/healthz", relay)
    wait_http(f"http://127.0.0.1:{port}/readyz", relay)
    print(f"relay answered /readyz {time.monotonic() - began:.1f}s after start")
    if os.geteuid() == 0:
        assert _uid(relay.popen.pid) == NONROOT
    unauthenticated = wait_http(f"http://127.0.0.1:{port}/v1/models", relay, status=401)
    assert unauthenticated.json()["error"]["type"] == "authentication_error"
    assert relay.stop() == 0, relay.output()


def test_the_operator_starts_as_the_image_user(image: Image, kubeconfig: Path, chatprovider_crd,
                                               processes, tmp_path: Path) -> None:
    health, port = free_port(), free_port()
    operator = processes(image.as_user(
        "chatprovider", "run", "--kubeconfig", str(_user_kubeconfig(image, kubeconfig)),
        "--health-port", str(health), "--relay-host", "127.0.0.1", "--relay-port", str(port),
        "--log-format", "json", pod="operator-0"), tmp_path / "operator.log")
    liveness = wait_http(f"http://127.0.0.1:{health}/healthz", operator)
    assert "providers" in liveness.json()  # kopf's probe result, as the liveness probe sees it
    wait_http(f"http://127.0.0.1:{port}/readyz", operator)
    if os.geteuid() == 0:
        assert _uid(operator.popen.pid) == NONROOT
    assert operator.stop() == 0, operator.output()
