"""The ``chatprovider`` command line: ``run``, ``relay``, ``check``, ``crd`` (and ``up`` from the
workshop package, when it is installed)."""

from chatprovider.cli.main import commands, main

__all__ = ["commands", "main"]
