"""The command group and the small commands (``crd``)."""

from __future__ import annotations

import click

from chatprovider.cli.check import check
from chatprovider.cli.run import relay, run
from chatprovider.cli.up import up

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="chatprovider-operator")
def main() -> None:
    """Register OpenAI-compatible chat endpoints (vLLM, Ollama, TGI, LiteLLM, ...) as Kubernetes
    ChatProvider resources, keep their health and models in status, and relay chat completions
    to them.

    \b
    Quick start:   chatprovider up            (local control plane, operator, relay, demo)
    Probe a URL:   chatprovider check http://localhost:11434
    In a cluster:  chatprovider run           (operator with the embedded relay)
    """


@main.command()
def crd() -> None:
    """Print the ChatProvider CustomResourceDefinition (YAML) to apply with kubectl."""
    from chatprovider.api.crd import render

    click.echo(render(), nl=False)


main.add_command(run)
main.add_command(relay)
main.add_command(up)
main.add_command(check)
