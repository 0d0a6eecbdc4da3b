"""The ``chatprovider`` command line: ``run``, ``relay``, ``up``, ``check``, ``crd``."""

from chatprovider.cli.main import main

__all__ = ["main"]
