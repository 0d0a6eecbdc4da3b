"""The relay to providers behind a forward proxy (``spec.proxy``), through Debian's real
``tinyproxy``: an ``http://`` upstream asked in absolute form, an ``https://`` one through a
``CONNECT`` tunnel with TLS to the upstream inside it (its private CA still checked), and a
proxy that refuses the tunnel or is down answered as a 502 ``proxy_error``."""

from __future__ import annotations

import ssl

import httpx
import trustme
from kubernetes import client as k8s_client

from chatprovider_tools.devserver import DevServer
from chatprovider_tools.tinyproxy import TinyProxy

from .conftest import provider_body

MSG = [{"role": "user", "content": "hello"}]


def _chat(relay, model: str, *, stream: bool = False) -> httpx.Response:
    return httpx.post(f"{relay.url}/chat/completions", timeout=30,
                      json={"model": model, "messages": MSG, "stream": stream})


def test_an_http_upstream_behind_a_proxy(relay, upstream, namespace) -> None:
    with TinyProxy() as proxy:
        relay.add(provider_body(namespace, "proxied", upstream.url, upstream.models,
                                proxy={"url": proxy.url}))
        model = f"{namespace}/proxied/{upstream.models[0]}"
        for stream in (False, True, False):
            answer = _chat(relay, model, stream=stream)
            assert answer.status_code == 200, answer.text
            assert answer.headers["X-ChatProvider"] == f"{namespace}/proxied"
        assert b"data: [DONE]" in _chat(relay, model, stream=True).content
        assert proxy.requests() == [
            f"POST http://127.0.0.1:{upstream.port}/v1/chat/completions"] * 4


def test_an_https_upstream_through_a_proxys_tunnel(relay, k8s, namespace) -> None:
    ca = trustme.CA()
    k8s_client.CoreV1Api(k8s).create_namespaced_config_map(namespace, {
        "metadata": {"name": "ca"}, "data": {"ca.crt": ca.cert_pem.bytes().decode()}})
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with DevServer("vllm", ssl_context=context) as upstream, TinyProxy() as proxy:
        bundle = {"caBundle": {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}}}
        relay.add(provider_body(namespace, "tunnelled", upstream.url, upstream.models,
                                tls=bundle, proxy={"url": proxy.url}))
        relay.add(provider_body(namespace, "untrusted", upstream.url, ["other-model"],
                                proxy={"url": proxy.url}))
        answer = _chat(relay, f"{namespace}/tunnelled/{upstream.models[0]}")
        assert answer.status_code == 200, answer.text
        assert proxy.requests() == [f"CONNECT 127.0.0.1:{upstream.port}"]
        # the tunnel carries TLS to the upstream: its certificate is still checked
        untrusted = _chat(relay, f"{namespace}/untrusted/other-model")
        assert untrusted.status_code == 502, untrusted.text
        assert untrusted.json()["error"]["code"] == "tls_error"


def test_a_proxy_that_refuses_the_tunnel_or_is_down_is_a_proxy_error(relay, namespace) -> None:
    with DevServer("vllm") as plain, TinyProxy(connect_ports=[1]) as proxy:
        https = plain.url.replace("http://", "https://")  # tunnels only to port 1: refused
        relay.add(provider_body(namespace, "refused", https, ["m"], proxy={"url": proxy.url}))
        down = TinyProxy()  # its port, with nothing listening there
        relay.add(provider_body(namespace, "down", plain.url, ["n"], proxy={"url": down.url}))
        for name, model in (("refused", "m"), ("down", "n")):
            answer = _chat(relay, f"{namespace}/{name}/{model}")
            assert answer.status_code == 502, (name, answer.text)
            assert answer.json()["error"]["code"] == "proxy_error", (name, answer.text)
        down.close()
        assert proxy.requests() == [f"CONNECT 127.0.0.1:{plain.port}"]
