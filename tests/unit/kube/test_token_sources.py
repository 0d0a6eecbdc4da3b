"""Token sources on a clock driven by hand: when a token file is read again, when an exec
plugin runs again, and what a plugin's output must hold."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from pathlib import Path

import pytest

from chatprovider.kube.credentials import (
    CredentialsError,
    ExecPlugin,
    ExecPluginError,
    TokenFile,
    parse_exec_credential,
)
from chatprovider.kube.kubeconfig import ExecSpec

V1 = "client.authentication.k8s.io/v1"


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_a_token_file_is_read_again_after_a_minute_or_a_401(tmp_path: Path) -> None:
    path, clock = tmp_path / "token", Clock(0.0)
    path.write_text("one\n")
    source = TokenFile(str(path), monotonic=clock)

    async def main() -> list[str | None]:
        seen = [await source.token()]
        path.write_text("two")
        clock.t = 59.0
        seen.append(await source.token())  # not yet
        seen.append(await source.renew("stale-other"))  # a 401 to an older token: no re-read
        seen.append(await source.renew("one"))  # a 401 to the current one: re-read at once
        path.write_text("three")
        clock.t = 59.0 + 60.0
        seen.append(await source.token())
        return seen

    assert asyncio.run(main()) == ["one", "one", "one", "two", "three"]


def test_an_empty_or_missing_token_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(CredentialsError, match="is empty"):
        asyncio.run(TokenFile(str(tmp_path / "empty")).token())
    with pytest.raises(OSError, match="cannot be read"):  # retried like a lost connection
        asyncio.run(TokenFile(str(tmp_path / "missing")).token())


def plugin(tmp_path: Path, ttl: float | None, clock: Clock) -> ExecSpec:
    """A plugin printing token-<n> (n counts runs) that expires ``ttl`` after ``clock``."""
    script = tmp_path / "plugin.py"
    script.write_text(f"""
import json, os, sys, datetime as dt
count = {str(tmp_path / 'count')!r}
n = int(open(count).read()) + 1 if os.path.exists(count) else 1
open(count, "w").write(str(n))
now = float(open({str(tmp_path / 'now')!r}).read())
status = {{"token": f"token-{{n}}"}}
ttl = {ttl!r}
if ttl is not None:
    status["expirationTimestamp"] = dt.datetime.fromtimestamp(now + ttl, dt.UTC).isoformat()
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
assert info["spec"]["interactive"] is False
assert os.environ["EXTRA"] == "yes"
print(json.dumps({{"apiVersion": info["apiVersion"], "kind": "ExecCredential",
                  "status": status}}))
""")
    (tmp_path / "now").write_text(str(clock.t))
    return ExecSpec(command=sys.executable, args=(str(script),), env=(("EXTRA", "yes"),),
                    api_version=V1)


def test_an_exec_token_is_renewed_a_fifth_of_its_lifetime_early(tmp_path: Path) -> None:
    clock = Clock()
    start = clock.t
    source = ExecPlugin(plugin(tmp_path, 100.0, clock), clock=clock)

    async def main() -> list[str | None]:
        seen = [await source.token()]
        clock.t += 89.0  # refresh at 90 (10 s early: the lesser of 10 s and a fifth)
        seen.append(await source.token())
        clock.t += 1.0
        seen.append(await source.token())
        return seen

    assert asyncio.run(main()) == ["token-1", "token-1", "token-2"]
    assert source.runs == 2
    assert source.expires_at == dt.datetime.fromtimestamp(start + 100.0, dt.UTC)


def test_concurrent_callers_of_a_due_plugin_share_one_run(tmp_path: Path) -> None:
    clock = Clock()
    source = ExecPlugin(plugin(tmp_path, 5.0, clock), clock=clock)

    async def main() -> set[str | None]:
        return set(await asyncio.gather(*(source.token() for _ in range(10))))

    assert asyncio.run(main()) == {"token-1"}
    assert source.runs == 1


def test_a_token_without_expiry_is_kept_until_a_401(tmp_path: Path) -> None:
    clock = Clock()
    source = ExecPlugin(plugin(tmp_path, None, clock), clock=clock)

    async def main() -> list[str | None]:
        first = await source.token()
        clock.t += 10 * 365 * 86400
        kept = await source.token()
        renewed = await asyncio.gather(*(source.renew(first) for _ in range(5)))
        return [first, kept, *set(renewed)]

    assert asyncio.run(main()) == ["token-1", "token-1", "token-2"]
    assert source.expires_at is None and source.runs == 2


def test_a_failing_plugin_names_its_field_and_keeps_stderr_out(tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text("import sys\nprint('secret-token', file=sys.stderr)\nsys.exit(3)\n")
    spec = ExecSpec(command=sys.executable, args=(str(script),), api_version=V1,
                    origin="users[name=me].user.exec")
    with pytest.raises(ExecPluginError, match=r"users\[name=me\]\.user\.exec\.command exited "
                                              r"with status 3") as info:
        asyncio.run(ExecPlugin(spec).token())
    assert "secret-token" not in str(info.value)
    with pytest.raises(ExecPluginError, match="cannot be run"):
        asyncio.run(ExecPlugin(ExecSpec(command=str(tmp_path / "nope"))).token())


@pytest.mark.parametrize(("doc", "message"), [
    ("not json", "is not JSON"),
    (json.dumps({"kind": "Other"}), "is not of kind ExecCredential"),
    (json.dumps({"kind": "ExecCredential", "apiVersion": "client.authentication.k8s.io/v1beta1",
                 "status": {"token": "t"}}), "has apiVersion"),
    (json.dumps({"kind": "ExecCredential", "apiVersion": V1}), "has no status"),
    (json.dumps({"kind": "ExecCredential", "apiVersion": V1, "status": {}}),
     "has no status.token"),
    (json.dumps({"kind": "ExecCredential", "apiVersion": V1,
                 "status": {"clientCertificateData": "x", "clientKeyData": "y"}}),
     "only tokens are supported"),
    (json.dumps({"kind": "ExecCredential", "apiVersion": V1,
                 "status": {"token": "t", "expirationTimestamp": "soon"}}), "is not RFC 3339"),
])
def test_bad_exec_credentials(doc: str, message: str) -> None:
    with pytest.raises(ExecPluginError, match=message):
        parse_exec_credential(doc.encode(), ExecSpec(command="p", api_version=V1))


def test_an_exec_credential_expiry_is_utc_and_its_token_is_not_in_repr() -> None:
    cred = parse_exec_credential(json.dumps({
        "kind": "ExecCredential", "apiVersion": V1,
        "status": {"token": "t0ken", "expirationTimestamp": "2030-01-02T03:04:05Z"}}).encode(),
        ExecSpec(command="p", api_version=V1))
    assert cred.token == "t0ken" and "t0ken" not in repr(cred)
    assert cred.expires == dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_kopf_login_renews_a_token_file_when_called_again(tmp_path: Path) -> None:
    """kopf calls the login handler again after a 401: in a pod, the file is read again then
    (kubelet may have rotated it within the minute)."""
    from chatprovider.kube.config import KubeConfig
    from chatprovider.watch import KopfLogin

    path = tmp_path / "token"
    path.write_text("old")
    login = KopfLogin(KubeConfig(server="https://api:6443", credentials=TokenFile(str(path))))

    async def main() -> list[str | None]:
        first = await login()
        path.write_text("new")
        second = await login()
        return [first.token, second.token, second.scheme]

    assert asyncio.run(main()) == ["old", "new", "Bearer"]
