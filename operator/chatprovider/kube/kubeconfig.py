"""Kubeconfig files, read as kubectl reads them, resolved to one context's connection settings.

* ``$KUBECONFIG`` may list several files (``:``-separated); they are merged as client-go merges
  them: for each cluster, user and context name, and for ``current-context``, the first file
  that sets it wins. Files of the list that do not exist are skipped.
* Paths in a file (``certificate-authority``, ``client-certificate``, ``client-key``,
  ``tokenFile``, and an exec ``command`` that contains a ``/``) are relative to that file's
  directory; a bare command is looked up on ``PATH``.
* Errors (:class:`KubeConfigError`) name the file and the field; they never hold a credential.

:func:`resolve` is pure (dicts in, :class:`Resolved` out) and unit-tested; :func:`load_files`
reads the files.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["EXEC_API_VERSIONS", "ExecSpec", "KubeConfigError", "Resolved", "default_paths",
           "load_files", "resolve"]

#: The ExecCredential versions understood (v1alpha1 was removed from client-go in 1.24).
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


class KubeConfigError(ValueError):
    """A kubeconfig is missing, unreadable, or lacks a field this context needs (fix it)."""


@dataclass(frozen=True)
class ExecSpec:
    """An exec credential plugin (``users[].user.exec``)."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    api_version: str = EXEC_API_VERSIONS[0]
    #: ``provideClusterInfo``: the cluster goes to the plugin in ``KUBERNETES_EXEC_INFO``.
    cluster: Mapping[str, Any] | None = None
    #: Where the spec came from, for error messages (``users[name=...].user.exec``).
    origin: str = "exec"


@dataclass(frozen=True)
class Resolved:
    """One context's connection settings. Credential fields are kept out of ``repr``."""

    server: str
    ca_file: str | None = None
    ca_data: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    tls_server_name: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = field(default=None, repr=False)
    key_data: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    exec: ExecSpec | None = None
    namespace: str | None = None
    context: str = ""


@dataclass(frozen=True)
class _Entry:
    """A named cluster, user or context, with the directory of the file that defined it."""

    value: Mapping[str, Any]
    path: Path


def default_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """``$KUBECONFIG``'s files, else ``~/.kube/config``."""
    env = os.environ if environ is None else environ
    listed = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        return [Path(p).expanduser() for p in listed]
    return [Path("~/.kube/config").expanduser()]


def load_files(paths: Sequence[Path], *, explicit: bool) -> list[tuple[Path, Mapping[str, Any]]]:
    """Parse each existing file of ``paths``. ``explicit`` (one path given by the user): a
    missing file is an error; otherwise missing files are skipped, and none at all is one."""
    loaded: list[tuple[Path, Mapping[str, Any]]] = []
    for path in paths:
        try:
            text = path.read_text()
        except FileNotFoundError:
            if explicit:
                raise KubeConfigError(f"kubeconfig {path} does not exist") from None
            continue
        except OSError as exc:
            raise KubeConfigError(f"kubeconfig {path} cannot be read: {exc.strerror}") from None
        try:
            doc = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise KubeConfigError(f"kubeconfig {path} is not valid YAML{where}") from None
        if not isinstance(doc, Mapping):
            raise KubeConfigError(f"kubeconfig {path} is not a mapping")
        loaded.append((path, doc))
    if not loaded:
        raise KubeConfigError(
            "no kubeconfig found (looked at " + ", ".join(str(p) for p in paths) + ")")
    return loaded


def _named(docs: Sequence[tuple[Path, Mapping[str, Any]]], section: str, key: str
           ) -> dict[str, _Entry]:
    out: dict[str, _Entry] = {}
    for path, doc in docs:
        for i, item in enumerate(doc.get(section) or []):
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise KubeConfigError(f"kubeconfig {path}: {section}[{i}].name is missing")
            value = item.get(key) or {}
            if not isinstance(value, Mapping):
                raise KubeConfigError(
                    f"kubeconfig {path}: {section}[name={item['name']}].{key} is not a mapping")
            out.setdefault(item["name"], _Entry(value, path))
    return out


def _path(entry: _Entry, key: str) -> str | None:
    value = entry.value.get(key)
    if not value:
        return None
    p = Path(str(value)).expanduser()
    return str(p if p.is_absolute() else entry.path.parent / p)


def _data(entry: _Entry, key: str, where: str) -> bytes | None:
    value = entry.value.get(key)
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError:
        raise KubeConfigError(f"kubeconfig {entry.path}: {where}.{key} is not base64") from None


def _exec(entry: _Entry, where: str, cluster: Mapping[str, Any]) -> ExecSpec:
    spec = entry.value["exec"]
    origin = f"{where}.exec"
    if not isinstance(spec, Mapping) or not spec.get("command"):
        raise KubeConfigError(f"kubeconfig {entry.path}: {origin}.command is missing")
    api_version = str(spec.get("apiVersion") or "")
    if api_version not in EXEC_API_VERSIONS:
        raise KubeConfigError(
            f"kubeconfig {entry.path}: {origin}.apiVersion {api_version or '(unset)'!r} is not "
            f"supported (use one of {', '.join(EXEC_API_VERSIONS)})")
    if spec.get("interactiveMode") == "Always":
        raise KubeConfigError(
            f"kubeconfig {entry.path}: {origin}.interactiveMode is Always, but this process "
            "has no terminal to ask on")
    command = str(spec["command"])
    if os.sep in command and not Path(command).is_absolute():
        command = str(entry.path.parent / command)
    env: list[tuple[str, str]] = []
    for i, var in enumerate(spec.get("env") or []):
        if not isinstance(var, Mapping) or "name" not in var or "value" not in var:
            raise KubeConfigError(
                f"kubeconfig {entry.path}: {origin}.env[{i}] needs a name and a value")
        env.append((str(var["name"]), str(var["value"])))
    return ExecSpec(
        command=command, args=tuple(str(a) for a in spec.get("args") or ()), env=tuple(env),
        api_version=api_version, origin=origin,
        cluster=cluster if spec.get("provideClusterInfo") else None)


def resolve(docs: Sequence[tuple[Path, Mapping[str, Any]]], context: str | None = None
            ) -> Resolved:
    """The connection settings of ``context`` (else the merged ``current-context``)."""
    first = docs[0][0]
    if context is None:
        context = next((str(d["current-context"]) for _, d in docs if d.get("current-context")),
                       None)
        if not context:
            raise KubeConfigError(f"kubeconfig {first}: current-context is not set "
                                  "(set it, or choose a context)")
        chosen_by = "current-context"
    else:
        chosen_by = "the chosen context"
    contexts = _named(docs, "contexts", "context")
    if context not in contexts:
        raise KubeConfigError(f"kubeconfig {first}: context {context!r} ({chosen_by}) is not "
                              f"among contexts[] ({', '.join(sorted(contexts)) or 'none'})")
    ctx = contexts[context]
    cluster_name, user_name = ctx.value.get("cluster"), ctx.value.get("user")
    clusters, users = _named(docs, "clusters", "cluster"), _named(docs, "users", "user")
    if not cluster_name or cluster_name not in clusters:
        raise KubeConfigError(f"kubeconfig {ctx.path}: contexts[name={context}].context.cluster "
                              f"{cluster_name!r} is not among clusters[]")
    cluster = clusters[str(cluster_name)]
    cwhere = f"clusters[name={cluster_name}].cluster"
    server = str(cluster.value.get("server") or "").rstrip("/")
    if not server:
        raise KubeConfigError(f"kubeconfig {cluster.path}: {cwhere}.server is missing")
    if user_name and user_name not in users:
        raise KubeConfigError(f"kubeconfig {ctx.path}: contexts[name={context}].context.user "
                              f"{user_name!r} is not among users[]")
    user = users.get(str(user_name)) if user_name else None
    ca_data = _data(cluster, "certificate-authority-data", cwhere)
    resolved: dict[str, Any] = {
        "server": server, "context": context,
        "namespace": ctx.value.get("namespace") or None,
        "ca_file": _path(cluster, "certificate-authority"), "ca_data": ca_data,
        "insecure": bool(cluster.value.get("insecure-skip-tls-verify")),
        "tls_server_name": cluster.value.get("tls-server-name") or None,
    }
    if user is not None:
        uwhere = f"users[name={user_name}].user"
        for unsupported, instead in (("auth-provider", "an exec plugin"),
                                     ("username", "a token or a client certificate")):
            if user.value.get(unsupported):
                raise KubeConfigError(f"kubeconfig {user.path}: {uwhere}.{unsupported} is not "
                                      f"supported; use {instead}")
        resolved.update(
            cert_file=_path(user, "client-certificate"), key_file=_path(user, "client-key"),
            cert_data=_data(user, "client-certificate-data", uwhere),
            key_data=_data(user, "client-key-data", uwhere),
            token=str(user.value["token"]) if user.value.get("token") else None,
            token_file=_path(user, "tokenFile"))
        has_cert = resolved["cert_file"] or resolved["cert_data"]
        has_key = resolved["key_file"] or resolved["key_data"]
        if bool(has_cert) != bool(has_key):
            missing = "client-key(-data)" if has_cert else "client-certificate(-data)"
            raise KubeConfigError(f"kubeconfig {user.path}: {uwhere}.{missing} is missing "
                                  "(a client certificate needs its key and the reverse)")
        if user.value.get("exec"):
            info: dict[str, Any] = {"server": server,
                                    "insecure-skip-tls-verify": resolved["insecure"]}
            if ca_data:
                info["certificate-authority-data"] = base64.b64encode(ca_data).decode()
            if resolved["tls_server_name"]:
                info["tls-server-name"] = resolved["tls_server_name"]
            resolved["exec"] = _exec(user, uwhere, info)
    return Resolved(**resolved)
