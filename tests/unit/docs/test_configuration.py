"""docs/configuration.md documents every flag, environment variable and setting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import pytest

from chatprovider.cli import commands
from chatprovider.relay import RelaySettings
from chatprovider.settings import OperatorSettings

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def _options() -> list[tuple[str, click.Option]]:
    return [(name, p) for name, cmd in sorted(commands().items()) for p in cmd.params
            if isinstance(p, click.Option)]


@pytest.mark.parametrize("command, option", _options(),
                         ids=lambda v: v if isinstance(v, str) else v.name)
def test_every_option_and_its_environment_variable_is_documented(command, option) -> None:
    text = DOC.read_text(encoding="utf-8")
    # up and check have options of the same name as run's: look in their own section.
    section = text.split(f"## `chatprovider {command}")[1].split("\n## ")[0] \
        if command in ("up", "check") else text
    for flag in (*option.opts, *option.secondary_opts):
        assert f"`{flag}" in section, f"chatprovider {command} {flag} is not in {DOC.name}"
    envvars = [option.envvar] if isinstance(option.envvar, str) else list(option.envvar or ())
    for envvar in envvars:
        assert f"`{envvar}`" in text, f"{envvar} is not in {DOC.name}"


def test_every_command_has_a_section() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in commands():
        assert f"## `chatprovider {name}" in text, name


@pytest.mark.parametrize("settings", [RelaySettings, OperatorSettings])
def test_every_setting_is_documented(settings) -> None:
    text = DOC.read_text(encoding="utf-8")
    for field in dataclasses.fields(settings):
        assert f"`{field.name}`" in text, f"{settings.__name__}.{field.name}"
