"""Every setting is reachable everywhere: a flag and its environment variable, a chart value
(with the model's default) wired into the Deployments, docs/configuration.md."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import yaml

from chatprovider.cli import commands
from chatprovider.cli.options import options
from chatprovider.settings import OperatorSettings, RelaySettings, setting_info
from chatprovider_tools.generators import settings as settings_generator
from chatprovider_tools.generators.settings import COMMANDS

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "configuration.md"


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


@pytest.mark.parametrize("model", [OperatorSettings, RelaySettings])
def test_every_setting_is_a_flag_of_a_command_and_a_chart_value_or_says_why_not(model) -> None:
    taken = {(o.model, o.field) for command in COMMANDS for o in options(command)}
    for name in model.model_fields:
        info = setting_info(model, name)
        assert (model, name) in taken, f"{model.__name__}.{name} is no command's flag"
        assert bool(info.chart) != bool(info.not_in_chart), name
        assert model.model_fields[name].description, f"{model.__name__}.{name} has no docstring"


def test_the_generated_chart_environment_schema_and_docs_are_current() -> None:
    assert settings_generator.stale(ROOT) == [], (
        "run `python -m chatprovider_tools.generators.settings` and commit the result")


def _value(values: dict, path: str) -> object:
    node: object = values
    for name in path.split("."):
        assert isinstance(node, dict) and name in node, f"values.yaml has no {path}"
        node = node[name]
    return node


@pytest.mark.parametrize("command", COMMANDS)
def test_values_yaml_holds_every_setting_with_the_models_default(command) -> None:
    values = yaml.safe_load((ROOT / "charts/chatprovider-operator/values.yaml").read_text())
    for option in options(command):
        if not option.info.chart:
            continue
        default = option.field_default
        default = default.value if hasattr(default, "value") else default
        if option.field == "host":  # in a pod the relay listens on every address
            assert _value(values, option.info.chart) == "0.0.0.0"
            continue
        if option.field == "log_format":  # in a cluster, for the log collector
            assert _value(values, option.info.chart) == "json"
            continue
        if option.field == "egress_deny":  # in a pod, loopback is the pod itself
            assert _value(values, option.info.chart) == ["127.0.0.0/8", "::1/128"]
            continue
        got = _value(values, option.info.chart)
        expected = list(default) if isinstance(default, tuple) else default
        assert got == expected, f"{option.info.chart}: values.yaml {got!r}, model {expected!r}"
