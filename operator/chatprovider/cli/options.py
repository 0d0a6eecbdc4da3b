"""The flags of ``chatprovider run`` and ``chatprovider relay``, made from the settings models.

Every field of :class:`~chatprovider.settings.OperatorSettings` and
:class:`~chatprovider.settings.RelaySettings` that a command takes becomes one option: its flag
is the field's name (``--workers``; relay fields ``--relay-...``) unless the field names
another, its environment variable is ``CHATPROVIDER_`` and the flag in capitals, its help is the
field's docstring, its type and limits are the field's. Several values are given repeated or
comma-separated (``-n a -n b``, ``-n a,b``, ``CHATPROVIDER_NAMESPACES=a,b``).
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from annotated_types import Ge, Gt, Le
from pydantic import BaseModel, ValidationError

from chatprovider.domain.egress import EgressPolicy
from chatprovider.settings import OperatorSettings, RelaySettings, SettingInfo, setting_info

__all__ = ["Option", "build", "egress_policy", "options", "settings_options", "split"]

F = TypeVar("F", bound=Callable[..., Any])
MODELS: tuple[type[BaseModel], ...] = (OperatorSettings, RelaySettings)


def split(values: tuple[str, ...]) -> tuple[str, ...]:
    """Flatten repeated and comma-separated values."""
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


@dataclass(frozen=True)
class Option:
    """One setting as a command-line option."""

    model: type[BaseModel]
    field: str
    info: SettingInfo
    command: str = "run"

    @property
    def flag(self) -> str:
        """The flag as written in ``--help`` (``--relay/--no-relay`` for a switch)."""
        if self.info.flag:
            return self.info.flag
        name = self.field.replace("_", "-")
        base = f"--{getattr(self.model, 'flag_prefix', '')}{name}"
        return f"{base}/--no-{base[2:]}" if self.is_switch else base

    @property
    def envvar(self) -> str:
        if self.info.env:
            return self.info.env
        first = self.flag.split("/")[0]
        return "CHATPROVIDER_" + first.removeprefix("--").replace("-", "_").upper()

    @property
    def param(self) -> str:
        """The click parameter's name (relay fields are ``relay_<field>``)."""
        prefix = getattr(self.model, "flag_prefix", "").replace("-", "_")
        return prefix + self.field

    @property
    def annotation(self) -> Any:
        return self.model.model_fields[self.field].annotation

    @property
    def is_switch(self) -> bool:
        return self.annotation is bool

    @property
    def is_many(self) -> bool:
        return typing.get_origin(self.annotation) is tuple

    @property
    def default(self) -> Any:
        """This command's default (the field's, unless the setting names another)."""
        return self.info.command_defaults.get(self.command, self.field_default)

    @property
    def field_default(self) -> Any:
        """The field's own default (the chart's value)."""
        return self.model.model_fields[self.field].default

    @property
    def help(self) -> str:
        """The docstring's first paragraph, on one line."""
        text = self.model.model_fields[self.field].description or ""
        return " ".join(text.split("\n\n")[0].split()).replace("``", "`")

    def click_type(self) -> Any:
        kind = self.annotation
        if isinstance(kind, types.UnionType):  # X | None
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            return click.Choice([m.value for m in kind], case_sensitive=False)
        if kind in (int, float):
            low = high = None
            for meta in self.model.model_fields[self.field].metadata:
                if isinstance(meta, Ge | Gt):
                    low = meta.ge if isinstance(meta, Ge) else meta.gt
                elif isinstance(meta, Le):
                    high = meta.le
            ranged = click.IntRange if kind is int else click.FloatRange
            return ranged(low, high)  # type: ignore[arg-type]
        return None

    def decorator(self) -> Callable[[F], F]:
        names = [self.flag, *([self.info.short] if self.info.short else [])]
        default = self.default
        if isinstance(default, enum.Enum):
            default = default.value
        return click.option(
            *names, self.param, default=default, envvar=self.envvar, show_envvar=True,
            show_default=True, multiple=self.is_many, type=self.click_type(), help=self.help,
            metavar="SECONDS" if self.help and self._seconds() else None)

    def _seconds(self) -> bool:
        return self.annotation is float and self.field not in ("jitter",)


def options(command: str) -> list[Option]:
    """The options of ``command`` (``run`` or ``relay``), in the models' order."""
    found = []
    for model in MODELS:
        for name in model.model_fields:
            info = setting_info(model, name)
            if command in info.commands:
                found.append(Option(model, name, info, command))
    return found


def settings_options(command: str) -> Callable[[F], F]:
    """Decorate a click command with every option of ``command``."""
    def decorate(f: F) -> F:
        for option in reversed(options(command)):
            f = option.decorator()(f)
        return f
    return decorate


M = TypeVar("M", bound=BaseModel)


def build(model: type[M], values: Mapping[str, Any], command: str) -> M:
    """The settings ``model`` from a command's parsed options; a bad value is a usage error
    naming its flag."""
    given: dict[str, Any] = {}
    by_field = {o.field: o for o in options(command) if o.model is model}
    for field, option in by_field.items():
        value = values[option.param]
        given[field] = split(value) if option.is_many else value
    try:
        return model(**given)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = str(error["loc"][0]) if error["loc"] else ""
        culprit = by_field.get(where)
        hint = culprit.flag.split("/")[0] if culprit else None
        raise click.BadParameter(error["msg"].removeprefix("Value error, "),
                                 param_hint=hint) from None


def egress_policy(allow: tuple[str, ...], deny: tuple[str, ...]) -> EgressPolicy:
    """The policy of ``--egress-allow``/``--egress-deny`` values (for ``chatprovider check``)."""
    try:
        return EgressPolicy.from_strings(split(allow), split(deny))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
