"""The command group and the small commands (``crd``).

Commands of other installed distributions join the group through the entry point group
``chatprovider.commands``: the workshop package (``chatprovider-tools``, installed by
``make setup``, not in the image) adds ``chatprovider up`` that way.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import click

from chatprovider.cli.check import check
from chatprovider.cli.run import relay, run
from chatprovider.cli.usage import usage

__all__ = ["COMMAND_ENTRY_POINTS", "commands", "main"]

COMMAND_ENTRY_POINTS = "chatprovider.commands"


class _Commands(click.Group):
    """The built-in commands, then those of other installed distributions (loaded only when
    listed or called)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        plugins = (e.name for e in entry_points(group=COMMAND_ENTRY_POINTS))
        return sorted({*super().list_commands(ctx), *plugins})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        for entry in entry_points(group=COMMAND_ENTRY_POINTS, name=cmd_name):
            loaded = entry.load()
            return loaded if isinstance(loaded, click.Command) else None
        return None


@click.group(cls=_Commands,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="chatprovider-operator")
def main() -> None:
    """Register OpenAI-compatible chat endpoints (vLLM, Ollama, TGI, LiteLLM, ...) as Kubernetes
    ChatProvider resources, keep their health and models in status, and relay chat completions
    to them.

    \b
    Quick start:   chatprovider up            (local control plane, operator, relay, demo;
                                              needs the workshop package of `make setup`)
    Probe a URL:   chatprovider check http://localhost:11434
    In a cluster:  chatprovider run           (operator with the embedded relay)
    """


@main.command()
def crd() -> None:
    """Print the CustomResourceDefinitions (ChatProvider, ChatQuota, ChatModel) as YAML
    documents to apply with kubectl."""
    from chatprovider.api.crd import render_all

    click.echo(render_all(), nl=False)


main.add_command(run)
main.add_command(relay)
main.add_command(check)
main.add_command(usage)


def commands() -> dict[str, click.Command]:
    """Every command of the group by name, those of other distributions included."""
    ctx = click.Context(main)
    found = {name: main.get_command(ctx, name) for name in main.list_commands(ctx)}
    return {name: command for name, command in found.items() if command is not None}
