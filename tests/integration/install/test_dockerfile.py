"""The Dockerfile: hadolint clean, multi-stage, only the virtual environment in the final stage,
a numeric non-root user, one image with two commands."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from .conftest import NONROOT, ROOT

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for word, rest in instructions():
        if word == "FROM":
            result.append([])
        if result:
            result[-1].append((word, rest))
    return result


def test_hadolint_finds_nothing(hadolint_bin: Path) -> None:
    proc = subprocess.run([str(hadolint_bin), "--no-color", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_it_is_multi_stage_on_python_slim() -> None:
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert len(froms) == 3
    assert froms[0].endswith(" AS build")
    assert froms[1].endswith(" AS tools"), "the workshop image is a named, non-default target"
    base = next(rest for word, rest in instructions() if word == "ARG"
                and rest.startswith("PYTHON_IMAGE="))
    assert base.split("=", 1)[1].startswith("python:3.11-slim")


def test_the_final_stage_holds_only_the_virtual_environment() -> None:
    final = stages()[-1]
    words = [word for word, _ in final]
    assert "RUN" not in words, "no package manager, compiler or pip runs in the final stage"
    copies = [rest for word, rest in final if word in ("COPY", "ADD")]
    assert copies == ["--from=build /etc/passwd /etc/group /etc/",
                      "--from=build /opt/chatprovider /opt/chatprovider"]
    build = " ".join(rest for _, rest in stages()[0])
    assert "pip wheel --no-deps" in build
    assert "venv --without-pip /opt/chatprovider" in build, "the venv carries no installer"
    assert "PIP_NO_CACHE_DIR=1" in build


def test_it_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for word, rest in stages()[-1] if word == "USER"]
    assert users == [f"{NONROOT}:{NONROOT}"]  # numeric: runAsNonRoot can verify it
    build = " ".join(rest for _, rest in stages()[0])
    assert f"chatprovider:x:{NONROOT}:{NONROOT}:" in build  # named, for getpass.getuser()


def test_one_image_two_commands_run_by_default() -> None:
    final = dict(stages()[-1])
    assert json.loads(final["ENTRYPOINT"]) == ["chatprovider"]
    assert json.loads(final["CMD"]) == ["run"]  # `docker run IMAGE relay` for the relay
    assert "PATH=/opt/chatprovider/bin:$PATH" in final["ENV"]
    assert "PYTHONDONTWRITEBYTECODE=1" in final["ENV"]  # read-only root filesystem


def test_dockerignore_is_an_allow_list() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!operator/"} <= set(lines)
    assert not any(line.startswith("!") and ("tests" in line or ".git" in line) for line in lines)
