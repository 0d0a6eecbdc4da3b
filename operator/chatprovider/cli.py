"""The ``chatprovider`` command line."""

from __future__ import annotations

import signal
import sys
import time

import click

from chatprovider.controlplane import BinariesNotFound, ControlPlane, ControlPlaneError

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Register OpenAI-compatible chat endpoints as Kubernetes ChatProvider resources and relay
    chat completions to them."""


@main.command()
def up() -> None:
    """Run the local demo: a control plane (etcd + kube-apiserver) on loopback.

    Prints the KUBECONFIG to use and runs until interrupted (Ctrl-C), then cleans up.
    """
    try:
        plane = ControlPlane()
    except BinariesNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("starting etcd and kube-apiserver ...", err=True)
    try:
        plane.start()
    except ControlPlaneError as exc:
        raise click.ClickException(str(exc)) from exc
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        click.echo(f"control plane ready in {plane.startup_seconds:.1f}s")
        click.echo(f"  export KUBECONFIG={plane.kubeconfig}")
        click.echo("press Ctrl-C to stop")
        while plane.alive():
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        plane.stop()
        click.echo("stopped", err=True)
