"""Relay processes (``chatprovider relay``, as the chart's relay ServiceAccount) as a Service
sees them: a fresh one is ready only once it has loaded the providers and their Secrets (the
loading held deterministically by a proxy in front of the API server); two behind one
round-robin address survive a rolling restart under steady load without a failed request."""

from __future__ import annotations

import threading
import uuid

import httpx
from kubernetes import client as k8s_client

from chatprovider_tools.controlplane.plane import write_kubeconfig
from chatprovider_tools.devserver import DevServer
from tests.integration.controller.conftest import Providers

from .conftest import RELEASE_NS
from .harness import ChatproviderProcess, wait_for
from .test_secrets import _force_ready
from .traffic import Balancer, HoldingApiProxy

MSG = [{"role": "user", "content": "hi"}]
FROZEN = "objects loaded at start are out of the garbage collector's walks"


def _readyz(relay: ChatproviderProcess) -> int:
    return httpx.get(f"{relay.url}/readyz", timeout=5).status_code


def _chat(base: str, model: str, stream: bool = False,
          client: httpx.Client | None = None) -> httpx.Response:
    post = client.post if client is not None else httpx.post
    return post(f"{base}/v1/chat/completions", timeout=30,
                json={"model": model, "messages": MSG, "stream": stream})


def _relay_token(cluster) -> str:
    sa = cluster.users["relay"].rsplit(":", 1)[1]
    return str(k8s_client.CoreV1Api(cluster.api).create_namespaced_service_account_token(
        sa, RELEASE_NS, {"spec": {"expirationSeconds": 3600}}).status.token)


def _new_namespace(cluster) -> tuple[str, Providers]:
    ns = f"rr-{uuid.uuid4().hex[:8]}"
    k8s_client.CoreV1Api(cluster.api).create_namespace({"metadata": {"name": ns}})
    return ns, Providers(cluster.api, ns)


def test_a_fresh_relay_is_ready_only_once_providers_and_secrets_are_loaded(
        secured_cluster, tmp_path, figure) -> None:
    cluster = secured_cluster
    ns, providers = _new_namespace(cluster)
    creds = cluster.plane.creds
    proxy = HoldingApiProxy(cluster.plane.server, creds.ca_cert, creds.serving_cert,
                            creds.serving_key, held=("chatproviders",))
    kc = write_kubeconfig(tmp_path / "relay-via-proxy", proxy.server, creds.ca_cert,
                          _relay_token(cluster), "relay")
    relays: list[ChatproviderProcess] = []
    seen: list[str] = []
    try:
        with DevServer("generic", models=["m"], api_keys={"k1", "k2"}) as up:
            providers.put_secret("key", {"apiKey": "k1"})
            providers.put_secret("key2", {"apiKey": "k2"})
            for name in ("early", "late"):
                providers.create(name, {"endpoint": up.base_url,
                                        "apiKeySecretRef": {"name": "key"}})
            _force_ready(providers, "early")  # "late" is not Ready yet

            # 1. The relay's own LIST of providers answered, its answer held: not ready (its
            # watch starts only once that list is in, so nothing is served from a half view).
            relay = ChatproviderProcess(kc, tmp_path / "relay-1.log", command="relay")
            relays.append(relay)
            relay.start(wait_ready=False)
            wait_for(lambda: proxy.held("chatproviders") >= 1, timeout=30,
                     what="the relay's LIST of providers")
            _force_ready(providers, "late")  # after the held list was answered
            assert httpx.get(f"{relay.url}/healthz", timeout=5).status_code == 200
            seen.append(f"list held: {_readyz(relay)}")
            assert _readyz(relay) == 503
            assert FROZEN not in relay.text()  # its heap is frozen once loaded, not before

            # 2. The (stale) list delivered: ready, and the watch that follows brings what
            # changed since (late becomes routable).
            proxy.release("chatproviders")
            wait_for(lambda: _readyz(relay) == 200, timeout=30, what="ready after the list")
            seen.append("list delivered: 200")
            wait_for(lambda: FROZEN in relay.text(), timeout=30, what="the heap frozen")
            wait_for(lambda: _chat(relay.url, f"{ns}/late/m").status_code == 200, timeout=30,
                     what="the watch to deliver late's new status")
            assert _chat(relay.url, f"{ns}/early/m").status_code == 200

            # 3. Once ready, a new provider naming a new Secret, whose read is held, does not
            # make the relay unready (every replica would leave the Service at once).
            proxy.hold("secrets")
            secrets_before = proxy.held("secrets")
            providers.create("newer", {"endpoint": up.base_url,
                                       "apiKeySecretRef": {"name": "key2"}})
            wait_for(lambda: proxy.held("secrets") > secrets_before, timeout=30,
                     what="the relay reading key2")
            seen.append(f"new Secret read held: {_readyz(relay)}")
            assert _readyz(relay) == 200
            proxy.release("secrets")

            # 4. A fresh relay whose Secret reads are held: not ready until they are answered.
            proxy.hold("secrets")
            secrets_before = proxy.held("secrets")
            fresh = ChatproviderProcess(kc, tmp_path / "relay-2.log", command="relay")
            relays.append(fresh)
            fresh.start(wait_ready=False)
            wait_for(lambda: proxy.held("secrets") >= secrets_before + 2, timeout=30,
                     what="the fresh relay reading key and key2")
            seen.append(f"fresh relay, Secrets held: {_readyz(fresh)}")
            assert _readyz(fresh) == 503
            proxy.release("secrets")
            wait_for(lambda: _readyz(fresh) == 200, timeout=30, what="ready after the Secrets")
            seen.append("Secrets delivered: 200")
            _force_ready(providers, "newer")
            wait_for(lambda: _chat(fresh.url, f"{ns}/newer/m").status_code == 200, timeout=30,
                     what="the fresh relay to route with key2")
            assert up.requests[-1].api_key == "k2"
    finally:
        for relay in relays:
            relay.stop(timeout=15)
        proxy.close()
    figure("a fresh relay's /readyz while its loading is held (proxy in front of the API "
           "server)", "; ".join(seen) + "; a status changed while the list was held is "
           "delivered by the watch that follows it")


def test_rolling_restart_of_two_relays_behind_one_address_fails_no_request(
        secured_cluster, tmp_path, figure) -> None:
    cluster = secured_cluster
    ns, providers = _new_namespace(cluster)
    model = f"{ns}/p/m"
    names = iter(range(100))

    def relay() -> ChatproviderProcess:
        return ChatproviderProcess(cluster.kubeconfigs["relay"],
                                   tmp_path / f"relay-{next(names)}.log", command="relay",
                                   extra=["--no-relay-access-log"])

    lb = Balancer()
    stop = threading.Event()
    lock = threading.Lock()
    done = {"chat": 0, "stream": 0}
    failures: list[str] = []

    def load() -> None:
        # A new connection per request, as through a Service to whichever pod is picked.
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
            stream = False
            while not stop.is_set():
                stream = not stream
                kind = "stream" if stream else "chat"
                try:
                    resp = _chat(lb.url, model, stream=stream, client=client)
                    ok = resp.status_code == 200 and (
                        resp.text.rstrip().endswith("data: [DONE]") if stream
                        else bool(resp.json().get("choices")))
                    outcome = None if ok else f"{kind}: {resp.status_code} {resp.text[:200]}"
                except httpx.HTTPError as exc:
                    outcome = f"{kind}: {type(exc).__name__}: {exc}"
                with lock:
                    if outcome is None:
                        done[kind] += 1
                    else:
                        failures.append(outcome)

    def total() -> int:
        with lock:
            return done["chat"] + done["stream"] + len(failures)

    relays: list[ChatproviderProcess] = []
    threads = [threading.Thread(target=load, name=f"load {i}", daemon=True) for i in range(4)]
    restarts: list[str] = []
    try:
        with DevServer("generic", models=["m"], api_keys={"k1"}) as up:
            up.behaviour.update(frame_delay=0.05)  # a stream lasts ~0.4 s: some span a stop
            providers.put_secret("key", {"apiKey": "k1"})
            providers.create("p", {"endpoint": up.base_url, "apiKeySecretRef": {"name": "key"}})
            _force_ready(providers, "p")
            relays = [relay().start(), relay().start()]
            for r in relays:
                wait_for(lambda r=r: _chat(r.url, model).status_code == 200, timeout=30,
                         what="each relay to route")
                lb.add(r.relay_port)
            for t in threads:
                t.start()
            wait_for(lambda: total() >= 40, timeout=60, what="steady load")
            for i in range(len(relays)):
                old = relays[i]
                lb.drain(old.relay_port)  # the endpoint goes (preStop), then SIGTERM
                in_flight_at_stop = up.in_flight
                assert old.stop(timeout=40) == 0, old.tail()
                new = relay()
                relays[i] = new
                new.start(wait_ready=False)
                new.wait_ready(timeout=60)  # /readyz 200: the Service adds it
                lb.add(new.relay_port)
                wait_for(lambda p=new.relay_port: lb.served(p) >= 10, timeout=60,
                         what="the new relay to take load")
                restarts.append(f"relay {i + 1}: {in_flight_at_stop} upstream requests in "
                                "flight at SIGTERM")
            after = total() + 40
            wait_for(lambda: total() >= after, timeout=60, what="load afterwards")
            stop.set()  # before the upstream goes
            for t in threads:
                t.join(40)
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(40)
        for r in relays:
            r.stop(timeout=15)
        lb.close()
    assert not failures, failures[:10]
    assert done["chat"] >= 40 and done["stream"] >= 40, done  # positive control
    assert lb.refused == 0
    figure("rolling restart of 2 relays behind one round-robin address (drain, SIGTERM, new "
           "process ready, added back; 4 clients, chats and ~0.4 s streams, a connection "
           "per request)",
           f"{done['chat']} chats and {done['stream']} streams, {len(failures)} failed; "
           + "; ".join(restarts))
