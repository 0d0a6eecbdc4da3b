"""Kubeconfigs as kubectl reads them: merged files, relative paths, contexts, and errors that
name the field at fault and never the credential."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from chatprovider.kube.config import KubeConfig
from chatprovider.kube.credentials import ExecPlugin, StaticToken, TokenFile, exec_info
from chatprovider.kube.kubeconfig import (
    KubeConfigError,
    default_paths,
    load_files,
    resolve,
)

SECRET = "s3cr3t-token-value"


def kubeconfig(path: Path, *, clusters=(), users=(), contexts=(), current=None) -> Path:
    doc: dict = {"apiVersion": "v1", "kind": "Config",
                 "clusters": [{"name": n, "cluster": c} for n, c in clusters],
                 "users": [{"name": n, "user": u} for n, u in users],
                 "contexts": [{"name": n, "context": c} for n, c in contexts]}
    if current:
        doc["current-context"] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def simple(path: Path, user: dict, cluster: dict | None = None, name: str = "one") -> Path:
    cluster = {"server": f"https://{name}:6443/"} if cluster is None else cluster
    return kubeconfig(path, clusters=[(name, cluster)],
                      users=[(name, user)], contexts=[(name, {"cluster": name, "user": name})],
                      current=name)


def load(*paths: Path, context: str | None = None):
    return resolve(load_files(list(paths), explicit=len(paths) == 1), context)


def test_a_token_user_resolves_to_server_and_token(tmp_path: Path) -> None:
    r = load(simple(tmp_path / "config", {"token": SECRET}))
    assert (r.server, r.token, r.context) == ("https://one:6443", SECRET, "one")
    assert SECRET not in repr(r)


def test_kubeconfig_list_merges_first_file_wins(tmp_path: Path) -> None:
    a = kubeconfig(tmp_path / "a", clusters=[("c", {"server": "https://from-a"})],
                   users=[("u", {"token": "a"})], current="ctx-b")
    b = kubeconfig(tmp_path / "b", clusters=[("c", {"server": "https://from-b"}),
                                             ("only-b", {"server": "https://only-b"})],
                   users=[("u", {"token": "b"})],
                   contexts=[("ctx-b", {"cluster": "c", "user": "u"}),
                             ("other", {"cluster": "only-b", "user": "u"})],
                   current="other")
    env = {"KUBECONFIG": os.pathsep.join([str(a), str(tmp_path / "missing"), "", str(b)])}
    docs = load_files(default_paths(env), explicit=False)
    r = resolve(docs)
    assert (r.context, r.server, r.token) == ("ctx-b", "https://from-a", "a")
    assert resolve(docs, "other").server == "https://only-b"


def test_no_kubeconfig_file_at_all_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="no kubeconfig found"):
        load_files(default_paths({"KUBECONFIG": str(tmp_path / "nope")}), explicit=False)
    with pytest.raises(KubeConfigError, match="does not exist"):
        load_files([tmp_path / "nope"], explicit=True)


def test_default_path_is_home_kube_config() -> None:
    assert default_paths({}) == [Path("~/.kube/config").expanduser()]


def test_relative_paths_are_resolved_against_the_defining_file(tmp_path: Path) -> None:
    path = simple(tmp_path / "dir" / "config",
                  {"client-certificate": "pki/me.crt", "client-key": "/abs/me.key",
                   "tokenFile": "token", "exec": None},
                  {"server": "https://x", "certificate-authority": "pki/ca.crt"})
    r = load(path)
    base = tmp_path / "dir"
    assert (r.ca_file, r.cert_file, r.key_file, r.token_file) == (
        str(base / "pki/ca.crt"), str(base / "pki/me.crt"), "/abs/me.key", str(base / "token"))


def test_exec_command_with_a_slash_is_relative_to_the_kubeconfig_a_bare_one_is_not(
        tmp_path: Path) -> None:
    for command, expected in (("./bin/plugin", str(tmp_path / "bin/plugin")),
                              ("gke-gcloud-auth-plugin", "gke-gcloud-auth-plugin"),
                              ("/usr/bin/plugin", "/usr/bin/plugin")):
        r = load(simple(tmp_path / "config", {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": command,
            "args": ["get-token", 7], "env": [{"name": "A", "value": "b"}],
            "interactiveMode": "Never"}}))
        assert r.exec is not None
        assert (r.exec.command, r.exec.args, r.exec.env) == (expected, ("get-token", "7"),
                                                             (("A", "b"),))


def test_data_fields_are_decoded(tmp_path: Path) -> None:
    enc = lambda b: base64.b64encode(b).decode()  # noqa: E731
    r = load(simple(tmp_path / "config",
                    {"client-certificate-data": enc(b"CERT"), "client-key-data": enc(b"KEY")},
                    {"server": "https://x", "certificate-authority-data": enc(b"CA"),
                     "insecure-skip-tls-verify": True, "tls-server-name": "api.internal"}))
    assert (r.cert_data, r.key_data, r.ca_data, r.insecure, r.tls_server_name) == (
        b"CERT", b"KEY", b"CA", True, "api.internal")


@pytest.mark.parametrize(("user", "cluster", "context", "message"), [
    ({"token": SECRET}, {}, None, r"clusters\[name=one\]\.cluster\.server is missing"),
    ({"token": SECRET}, {"server": "https://x"}, "nope",
     r"context 'nope' \(the chosen context\) is not among contexts\[\] \(one\)"),
    ({"token": SECRET, "client-certificate": "c.crt"}, {"server": "https://x"}, None,
     r"users\[name=one\]\.user\.client-key\(-data\) is missing"),
    ({"token": SECRET, "client-key-data": "S0VZ"}, {"server": "https://x"}, None,
     r"users\[name=one\]\.user\.client-certificate\(-data\) is missing"),
    ({"token": SECRET}, {"server": "https://x", "certificate-authority-data": "%%%"}, None,
     r"clusters\[name=one\]\.cluster\.certificate-authority-data is not base64"),
    ({"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "p"}},
     {"server": "https://x"}, None, r"users\[name=one\]\.user\.exec\.apiVersion 'client"
     r"\.authentication\.k8s\.io/v1alpha1' is not supported"),
    ({"exec": {"apiVersion": "client.authentication.k8s.io/v1"}}, {"server": "https://x"},
     None, r"users\[name=one\]\.user\.exec\.command is missing"),
    ({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "p",
               "interactiveMode": "Always"}}, {"server": "https://x"}, None,
     r"exec\.interactiveMode is Always"),
    ({"auth-provider": {"name": "gcp", "config": {"access-token": SECRET}}},
     {"server": "https://x"}, None, r"user\.auth-provider is not supported; use an exec plugin"),
    ({"username": "me", "password": SECRET}, {"server": "https://x"}, None,
     r"user\.username is not supported"),
])
def test_errors_name_the_field_and_never_the_token(tmp_path: Path, user, cluster, context,
                                                   message) -> None:
    path = simple(tmp_path / "config", user, cluster)
    with pytest.raises(KubeConfigError, match=message) as info:
        load(path, context=context)
    assert str(path) in str(info.value)
    assert SECRET not in str(info.value)


def test_a_context_naming_a_missing_cluster_or_user_is_an_error(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "c", clusters=[("c", {"server": "https://x"})],
                      contexts=[("no-cluster", {"cluster": "zz", "user": "u"}),
                                ("no-user", {"cluster": "c", "user": "zz"})])
    with pytest.raises(KubeConfigError, match=r"current-context is not set"):
        load(path)
    with pytest.raises(KubeConfigError, match=r"contexts\[name=no-cluster\]\.context\.cluster"):
        load(path, context="no-cluster")
    with pytest.raises(KubeConfigError, match=r"contexts\[name=no-user\]\.context\.user"):
        load(path, context="no-user")


def test_invalid_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(f"users:\n- name: a\n  user: {{token: {SECRET}\n")
    with pytest.raises(KubeConfigError, match=r"is not valid YAML at line") as info:
        load(path)
    assert SECRET not in str(info.value)


def test_a_context_without_user_is_anonymous(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "c", clusters=[("c", {"server": "https://x"})],
                      contexts=[("anon", {"cluster": "c", "namespace": "team"})], current="anon")
    r = load(path)
    assert (r.token, r.exec, r.namespace) == (None, None, "team")


def test_credential_sources_follow_client_go_precedence(tmp_path: Path) -> None:
    def creds(user: dict):
        return KubeConfig.load(str(simple(tmp_path / "config", user))).credentials

    assert isinstance(creds({"token": "t", "tokenFile": "f"}), TokenFile)
    assert isinstance(creds({"token": "t"}), StaticToken)
    assert isinstance(creds({"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                                      "command": "p"}}), ExecPlugin)
    assert isinstance(creds({}), StaticToken)


def test_explicit_context_and_kubeconfig_env(tmp_path: Path, monkeypatch) -> None:
    a = simple(tmp_path / "a", {"token": "a"}, name="first")
    b = simple(tmp_path / "b", {"token": "b"}, name="second")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(a), str(b)]))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert KubeConfig.load().server == "https://first:6443"
    assert KubeConfig.load(context="second").server == "https://second:6443"


def test_provide_cluster_info_goes_to_the_plugin(tmp_path: Path) -> None:
    r = load(simple(tmp_path / "config", {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": "p",
        "provideClusterInfo": True}},
        {"server": "https://x", "certificate-authority-data": base64.b64encode(b"CA").decode()}))
    assert r.exec is not None
    info = json.loads(exec_info(r.exec))
    assert info == {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                    "spec": {"interactive": False, "cluster": {
                        "server": "https://x", "insecure-skip-tls-verify": False,
                        "certificate-authority-data": "Q0E="}}}


def test_in_cluster_uses_the_service_account_files(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "token").write_text("tok\n")
    (tmp_path / "namespace").write_text("ops")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "8443")
    c = KubeConfig.load(service_account_dir=tmp_path)
    assert (c.server, c.ca_file, c.namespace) == ("https://[fd00::1]:8443",
                                                  str(tmp_path / "ca.crt"), "ops")
    assert isinstance(c.credentials, TokenFile)
    assert c.credentials.path == str(tmp_path / "token")


_BROKEN = [
    lambda u: ({"c": {}}, u),  # no server
    lambda u: ({"c": {"server": "https://x", "certificate-authority-data": "%"}}, u),
    lambda u: ({"c": {"server": "https://x"}}, {**u, "client-certificate": "c.crt"}),
    lambda u: ({"c": {"server": "https://x"}}, {**u, "exec": {"command": "p"}}),
    lambda u: ({"c": {"server": "https://x"}}, {**u, "auth-provider": {"name": "oidc"}}),
]


@settings(max_examples=60, deadline=None)
@given(token=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=20),
       broken=st.sampled_from(_BROKEN))
def test_no_error_ever_holds_the_token(token: str, broken) -> None:
    clusters, user = broken({"token": token, "client-key-data": None})
    doc = {"clusters": [{"name": "c", "cluster": clusters["c"]}],
           "users": [{"name": "u", "user": user}],
           "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
           "current-context": "x"}
    with pytest.raises(KubeConfigError) as info:
        resolve([(Path("/k/config"), doc)])
    assert token not in str(info.value)
