"""The relay to HTTPS upstreams: the provider's private CA (from a ConfigMap or a Secret, read
through the relay's watch), a rotated CA picked up from the next request, insecureSkipVerify,
and an untrusted certificate answered as a 502 ``tls_error`` (never a retry in plaintext)."""

from __future__ import annotations

import base64
import ssl

import httpx
import trustme
from kubernetes import client as k8s_client

from chatprovider.domain.ejection import EjectionPolicy
from chatprovider_tools.devserver import DevServer

from .conftest import provider_body, wait_until

MSG = [{"role": "user", "content": "hello"}]
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


def _tls_server(ca: trustme.CA, port: int = 0) -> DevServer:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return DevServer("vllm", ssl_context=ctx, port=port)


def _chat(relay, model: str) -> httpx.Response:
    return httpx.post(f"{relay.url}/chat/completions", json={"model": model, "messages": MSG},
                      timeout=30)


def test_private_ca_from_a_config_map_and_its_rotation(relay_factory, k8s, namespace) -> None:
    # The TLS failure after the upstream's new certificate ejects the provider (passive
    # health); with no operator here to re-check it, it returns after its probation: short.
    relay = relay_factory(ejection_policy=EjectionPolicy(probation=0.5))
    core = k8s_client.CoreV1Api(k8s)
    old_ca, new_ca = trustme.CA(), trustme.CA()
    core.create_namespaced_config_map(namespace, {
        "metadata": {"name": "ca"}, "data": {"ca.crt": old_ca.cert_pem.bytes().decode()}})
    upstream = _tls_server(old_ca).start()
    try:
        assert upstream.url.startswith("https://")
        bundle = {"caBundle": {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}}}
        relay.add(provider_body(namespace, "private", upstream.url, upstream.models, tls=bundle))
        relay.add(provider_body(namespace, "untrusted", upstream.url, ["untrusted-model"]))
        model = f"{namespace}/private/{LLAMA}"
        answer = _chat(relay, model)
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-ChatProvider"] == f"{namespace}/private"

        untrusted = _chat(relay, f"{namespace}/untrusted/untrusted-model")
        assert untrusted.status_code == 502, untrusted.text
        assert untrusted.json()["error"]["code"] == "tls_error"

        # the upstream's certificate now comes from a new CA, on the same address
        port = upstream.port
        upstream.stop()
        upstream = _tls_server(new_ca, port=port).start()
        refused = _chat(relay, model)
        assert refused.status_code == 502 and refused.json()["error"]["code"] == "tls_error"
        core.patch_namespaced_config_map("ca", namespace, {
            "data": {"ca.crt": new_ca.cert_pem.bytes().decode()}})
        wait_until(lambda: _chat(relay, model).status_code == 200,
                   what="the rotated CA in use (no relay restart)")
    finally:
        upstream.stop()


def test_ca_from_a_secret_and_insecure_skip_verify(relay, k8s, namespace) -> None:
    ca = trustme.CA()
    k8s_client.CoreV1Api(k8s).create_namespaced_secret(namespace, {
        "metadata": {"name": "ca"},
        "data": {"ca.crt": base64.b64encode(ca.cert_pem.bytes()).decode()}})
    with _tls_server(ca) as upstream:
        relay.add(provider_body(namespace, "from-secret", upstream.url, upstream.models, tls={
            "caBundle": {"secretKeyRef": {"name": "ca", "key": "ca.crt"}}}))
        relay.add(provider_body(namespace, "insecure", upstream.url, upstream.models,
                                tls={"insecureSkipVerify": True}))
        assert _chat(relay, f"{namespace}/from-secret/{LLAMA}").status_code == 200
        assert _chat(relay, f"{namespace}/insecure/{LLAMA}").status_code == 200
