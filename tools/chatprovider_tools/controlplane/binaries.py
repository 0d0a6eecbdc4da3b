"""Locating the control plane's executables.

Search order, first match wins for each binary:

1. ``TEST_ASSET_KUBE_APISERVER`` / ``TEST_ASSET_ETCD`` / ``TEST_ASSET_KUBECTL`` (envtest names);
2. ``KUBEBUILDER_ASSETS`` (a directory holding all of them, the envtest convention);
3. the cache filled by ``scripts/install-control-plane.sh``:
   ``$CHATPROVIDER_CACHE/k8s/<version>/bin`` (default ``~/.cache/chatprovider``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_K8S_VERSION", "Binaries", "BinariesNotFound", "cache_root", "find_binaries"]

DEFAULT_K8S_VERSION = "v1.35.4"
_NAMES = {"kube_apiserver": "kube-apiserver", "etcd": "etcd", "kubectl": "kubectl"}
_ENV = {
    "kube_apiserver": "TEST_ASSET_KUBE_APISERVER",
    "etcd": "TEST_ASSET_ETCD",
    "kubectl": "TEST_ASSET_KUBECTL",
}


class BinariesNotFound(FileNotFoundError):
    """A control-plane executable is missing; the message says how to get it."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the executables the control plane and its tests need."""

    kube_apiserver: Path
    etcd: Path
    kubectl: Path


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """The directory under which the project caches what it builds (outside any checkout)."""
    env = os.environ if env is None else env
    return Path(env.get("CHATPROVIDER_CACHE") or Path.home() / ".cache" / "chatprovider")


def find_binaries(
    env: Mapping[str, str] | None = None, version: str = DEFAULT_K8S_VERSION
) -> Binaries:
    """Find every executable or raise :class:`BinariesNotFound` naming what is missing."""
    env = os.environ if env is None else env
    dirs = [Path(env["KUBEBUILDER_ASSETS"])] if env.get("KUBEBUILDER_ASSETS") else []
    dirs.append(cache_root(env) / "k8s" / version / "bin")
    found: dict[str, Path] = {}
    missing: list[str] = []
    for field, name in _NAMES.items():
        candidates = [Path(env[_ENV[field]])] if env.get(_ENV[field]) else []
        candidates += [d / name for d in dirs]
        path = next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)
        if path is None:
            missing.append(f"{name} (looked in {', '.join(str(c) for c in candidates)})")
        else:
            found[field] = path
    if missing:
        raise BinariesNotFound(
            "control-plane binaries not found: "
            + "; ".join(missing)
            + ". Build them with `bash scripts/install-control-plane.sh`"
            " or point KUBEBUILDER_ASSETS at a directory that holds them."
        )
    return Binaries(**found)
