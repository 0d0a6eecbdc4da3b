"""TLS with a private CA, and the canary key: it never appears in status, Events or logs."""

from __future__ import annotations

import base64
import logging

import trustme

from chatprovider_tools.controlplane.plane import free_port
from chatprovider_tools.devserver import DevServer


def _tls_server(ca: trustme.CA, *names: str) -> DevServer:
    cert = ca.issue_cert(*names)
    ctx = __import__("ssl").create_default_context(__import__("ssl").Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return DevServer("vllm", ssl_context=ctx)


def test_private_ca_unknown_authority_hostname_mismatch_and_ca_bundle(operator, providers):
    ca = trustme.CA()
    with _tls_server(ca, "127.0.0.1") as good, _tls_server(ca, "other.example") as wrong:
        assert good.base_url.startswith("https://")
        providers.create("untrusted", {"endpoint": good.base_url})
        providers.wait_reason("untrusted", "TLSUnknownAuthority")

        providers.put_configmap("ca", {"ca.crt": ca.cert_pem.bytes().decode()})
        bundle = {"caBundle": {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}}}
        providers.create("trusted", {"endpoint": good.base_url, "tls": bundle})
        providers.wait_reason("trusted", "Ready")

        providers.create("mismatch", {"endpoint": wrong.base_url, "tls": bundle})
        providers.wait_reason("mismatch", "TLSHostnameMismatch")

        providers.create("missing-ca", {"endpoint": good.base_url, "tls": {
            "caBundle": {"secretKeyRef": {"name": "nope", "key": "ca.crt"}}}})
        providers.wait_reason("missing-ca", "CABundleNotFound")

        providers.create("insecure", {"endpoint": good.base_url,
                                      "tls": {"insecureSkipVerify": True}})
        providers.wait_reason("insecure", "Ready")


CANARY = "sk-canary-7f3a9c1e5b2d4086"


def test_canary_key_never_leaks(operator, providers, caplog):
    caplog.set_level(logging.DEBUG)
    with DevServer("vllm", api_keys={"something-else"}) as srv:
        providers.put_secret("canary", {"apiKey": CANARY})
        ref = {"name": "canary"}
        providers.create("unauthorized", {"endpoint": srv.base_url, "apiKeySecretRef": ref})
        providers.create("refused", {"endpoint": f"http://127.0.0.1:{free_port()}",
                                     "apiKeySecretRef": ref})
        providers.create("dns", {"endpoint": "http://canary.invalid", "apiKeySecretRef": ref})
        providers.create("verify", {"endpoint": srv.base_url, "apiKeySecretRef": ref,
                                    "verification": {"enabled": True, "model": "m"}})
        providers.wait_reason("unauthorized", "Unauthorized")
        providers.wait_reason("refused", "ConnectionRefused")
        providers.wait_reason("dns", "DNSFailure")
        providers.wait_reason("verify", "Unauthorized")
        srv.set_api_keys({CANARY})
        providers.patch("unauthorized", {"metadata": {"annotations": {
            "ai.chatprovider.dev/refresh": "1"}}})
        providers.wait_reason("unauthorized", "Ready")
        assert any(r.headers.get("Authorization") == f"Bearer {CANARY}" for r in srv.requests)

    forms = [CANARY, base64.b64encode(CANARY.encode()).decode()]
    for name in ("unauthorized", "refused", "dns", "verify"):
        dumped = providers.dump(name)
        events = str(providers.events(name))
        for form in forms:
            assert form not in dumped and form not in events
    logs = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert logs, "expected debug logs"
    for form in forms:
        assert form not in logs
