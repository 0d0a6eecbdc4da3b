"""Bearer tokens that change: a static token, a token file kubelet rotates, an exec plugin.

Every source answers :meth:`TokenSource.token` (the token to send now, refreshed when due) and
:meth:`TokenSource.renew` (the API server answered 401 to this token: get another). Both our
client and kopf's login handler (:mod:`chatprovider.watch`) ask the same source, so one run of
an exec plugin serves both.

* :class:`TokenFile` re-reads the file every minute (kubelet rewrites a projected
  ServiceAccount token at 80 % of its lifetime, the old one stays valid until it expires) and at
  once on a 401.
* :class:`ExecPlugin` runs the plugin when no token is held, before ``expirationTimestamp``
  (a fifth of the token's lifetime early, at most 10 s), and on a 401 to the token it handed out;
  a lock makes concurrent requests wait for one run. A plugin's ``stderr`` is not relayed (some
  print tokens there); its exit status and the ExecCredential field at fault are.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from chatprovider.kube.kubeconfig import ExecSpec

__all__ = ["CredentialsError", "ExecCredential", "ExecPlugin", "ExecPluginError", "StaticToken",
           "TokenFile", "TokenSource", "parse_exec_credential"]

Clock = Callable[[], float]  # seconds since the epoch (expirationTimestamp is wall-clock time)


class CredentialsError(ConnectionError):
    """No credential could be had just now (a token file unreadable, an exec plugin failed).

    A :class:`ConnectionError` (so an :class:`OSError`): callers that retry when the API server
    cannot be reached retry this too, which is right, since kubelet rewrites a token file and a
    plugin's identity provider comes back.
    """


class ExecPluginError(CredentialsError):
    """The exec plugin failed or printed no usable ExecCredential."""


class TokenSource:
    """Hands out the bearer token to send; subclasses know how to refresh it."""

    async def token(self) -> str | None:
        raise NotImplementedError

    async def renew(self, rejected: str | None) -> str | None:
        """The API server refused ``rejected`` (401): a fresh token, or the same if none."""
        return await self.token()

    @property
    def expires_at(self) -> dt.datetime | None:
        """When the current token stops being valid, if known (kopf re-logs in then)."""
        return None


class StaticToken(TokenSource):
    def __init__(self, token: str | None) -> None:
        self._token = token

    async def token(self) -> str | None:
        return self._token


class TokenFile(TokenSource):
    """A token file re-read every ``every`` seconds and after a 401."""

    def __init__(self, path: str, *, every: float = 60.0,
                 monotonic: Clock = time.monotonic) -> None:
        self.path, self._every, self._monotonic = path, every, monotonic
        self._token: str | None = None
        self._read_at = float("-inf")

    def _read(self) -> str:
        try:
            token = Path(self.path).read_text().strip()
        except OSError as exc:
            raise CredentialsError(f"token file {self.path} cannot be read: {exc.strerror}"
                                   ) from None
        if not token:
            raise CredentialsError(f"token file {self.path} is empty")
        self._read_at = self._monotonic()
        return token

    async def token(self) -> str | None:
        if self._token is None or self._monotonic() - self._read_at >= self._every:
            self._token = self._read()
        return self._token

    async def renew(self, rejected: str | None) -> str | None:
        if rejected is not None and rejected == self._token:
            self._token = self._read()
        return await self.token()


class ExecCredential:
    """What a plugin printed: a token and, when it says, the moment the token expires."""

    def __init__(self, token: str, expires: dt.datetime | None) -> None:
        self.token, self.expires = token, expires

    def __repr__(self) -> str:  # never the token
        return f"ExecCredential(expires={self.expires})"


def parse_exec_credential(stdout: bytes, spec: ExecSpec) -> ExecCredential:
    """Parse the ExecCredential a plugin printed; :class:`ExecPluginError` names what is
    wrong."""
    where = f"the ExecCredential printed by {spec.origin}.command"
    try:
        doc = json.loads(stdout)
    except ValueError:
        raise ExecPluginError(f"{where} is not JSON") from None
    if not isinstance(doc, Mapping) or doc.get("kind") != "ExecCredential":
        raise ExecPluginError(f"{where} is not of kind ExecCredential")
    if doc.get("apiVersion") != spec.api_version:
        raise ExecPluginError(f"{where} has apiVersion {doc.get('apiVersion')!r}, the kubeconfig "
                              f"asks for {spec.api_version!r}")
    status = doc.get("status")
    if not isinstance(status, Mapping):
        raise ExecPluginError(f"{where} has no status")
    token = status.get("token")
    if not token:
        if status.get("clientCertificateData"):
            raise ExecPluginError(f"{where} holds a client certificate; only tokens are "
                                  "supported")
        raise ExecPluginError(f"{where} has no status.token")
    expires = None
    if raw := status.get("expirationTimestamp"):
        try:
            expires = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            raise ExecPluginError(f"{where}: status.expirationTimestamp {raw!r} is not RFC "
                                  "3339") from None
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=dt.UTC)
    return ExecCredential(str(token), expires)


def exec_info(spec: ExecSpec) -> str:
    """``KUBERNETES_EXEC_INFO``: the ExecCredential request the plugin reads."""
    request: dict[str, Any] = {"interactive": False}
    if spec.cluster is not None:
        request["cluster"] = dict(spec.cluster)
    return json.dumps({"apiVersion": spec.api_version, "kind": "ExecCredential",
                       "spec": request})


class ExecPlugin(TokenSource):
    """A client.authentication.k8s.io exec plugin, run again before its token expires."""

    def __init__(self, spec: ExecSpec, *, timeout: float = 60.0, clock: Clock = time.time
                 ) -> None:
        self.spec, self._timeout, self._clock = spec, timeout, clock
        self._current: ExecCredential | None = None
        self._refresh_at = float("inf")
        self._lock = asyncio.Lock()
        #: How many times the plugin has run (for logs and tests).
        self.runs = 0

    @property
    def expires_at(self) -> dt.datetime | None:
        return self._current.expires if self._current else None

    def _due(self) -> bool:
        return self._current is None or self._clock() >= self._refresh_at

    async def token(self) -> str | None:
        if self._due():
            async with self._lock:
                if self._due():  # another request may have run it while this one waited
                    await self._run()
        assert self._current is not None
        return self._current.token

    async def renew(self, rejected: str | None) -> str | None:
        async with self._lock:
            if self._current is None or self._current.token == rejected:
                await self._run()
        return await self.token()

    async def _run(self) -> None:
        env = {**os.environ, **dict(self.spec.env), "KUBERNETES_EXEC_INFO": exec_info(self.spec)}
        began = self._clock()
        try:
            proc = await asyncio.create_subprocess_exec(
                self.spec.command, *self.spec.args, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        except OSError as exc:
            raise ExecPluginError(f"{self.spec.origin}.command {self.spec.command!r} cannot be "
                                  f"run: {exc.strerror}") from None
        try:
            async with asyncio.timeout(self._timeout):
                stdout, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ExecPluginError(f"{self.spec.origin}.command did not finish within "
                                  f"{self._timeout:.0f} s") from None
        self.runs += 1
        if proc.returncode != 0:
            raise ExecPluginError(f"{self.spec.origin}.command exited with status "
                                  f"{proc.returncode}")
        cred = parse_exec_credential(stdout, self.spec)
        self._current = cred
        if cred.expires is None:
            self._refresh_at = float("inf")  # valid until the API server says otherwise (401)
        else:
            expires = cred.expires.timestamp()
            self._refresh_at = expires - min(10.0, max(0.0, expires - began) / 5)
