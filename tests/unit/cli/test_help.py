"""Every command's ``--help`` reads well: it renders, says what the command does in one line,
and (for the newcomer's commands) explains every option."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from chatprovider.cli import commands, main

COMMANDS = sorted(commands())


def help_text(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_group_summarises_the_newcomers_commands_in_whole_sentences() -> None:
    text = help_text()
    for name in ("up", "check"):
        line = next(line for line in text.splitlines() if line.strip().startswith(name + " "))
        assert not line.rstrip().endswith("..."), f"truncated summary: {line.strip()}"
    assert "chatprovider up" in text and "chatprovider check" in text


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name: str) -> None:
    text = help_text(name)
    assert f"Usage: main {name}" in text or f"Usage: chatprovider {name}" in text
    assert len(commands()[name].help or "") > 20


@pytest.mark.parametrize("name", ["up", "check"])
def test_every_option_of_the_newcomers_commands_is_explained(name: str) -> None:
    command = commands()[name]
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help and len(param.help) > 15, f"{name} {param.opts[0]} has no help"
    text = help_text(name)
    assert "Examples:" in text
    assert max(len(line) for line in text.splitlines()) <= 100


def test_up_help_shows_the_six_steps() -> None:
    text = help_text("up")
    for n in range(1, 7):
        assert f"  {n}. " in text
    assert "--playground / --no-playground" in text


def test_check_help_states_the_exit_codes() -> None:
    assert "Exits 0 when the provider would be Ready, 1 when not" in " ".join(
        help_text("check").split())
