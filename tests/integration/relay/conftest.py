"""The relay in a background thread with its own loop, over a hand-built registry, a real
ReferencedObjects (real KubeClient, real API server) and DevServer upstreams."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
from kubernetes import client as k8s_client

from chatprovider.api.v1alpha1 import ChatProviderStatus
from chatprovider.domain.conditions import Reason
from chatprovider.domain.egress import EgressPolicy
from chatprovider.domain.ejection import EjectionPolicy
from chatprovider.kube import KubeClient, KubeConfig
from chatprovider.kube.objects import ReferencedObjects
from chatprovider.registry import ProviderView, Registry, view_from_body
from chatprovider.relay import AuthMode, Relay, RelaySettings
from chatprovider.upstream.transport import Transports
from chatprovider_tools.devserver import DevServer

T = TypeVar("T")


def provider_body(namespace: str, name: str, endpoint: str, models: list[str] | tuple[str, ...],
                  *, ready: bool = True, key_secret: str | None = None,
                  **spec: Any) -> dict[str, Any]:
    """A ChatProvider as the API server would hold it after the operator marked it Ready."""
    full_spec: dict[str, Any] = {"endpoint": endpoint, **spec}
    if key_secret is not None:
        full_spec["apiKeySecretRef"] = {"name": key_secret, "key": "apiKey"}
    status = ChatProviderStatus.model_validate({
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                        "reason": Reason.READY if ready else Reason.CONNECTION_REFUSED,
                        "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"}],
        "models": [{"id": m} for m in models],
    })
    return {
        "metadata": {"namespace": namespace, "name": name, "uid": str(uuid.uuid4()),
                     "generation": 1, "resourceVersion": "1"},
        "spec": full_spec,
        "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


class RelayThread:
    """Runs a Relay (and its registry, objects and transports) in a thread's event loop."""

    def __init__(self, settings: RelaySettings, kubeconfig: Path,
                 egress: EgressPolicy | None = None,
                 ejection_policy: EjectionPolicy | None = None) -> None:
        self.settings = settings
        self._ejection_policy = ejection_policy
        self.registry = Registry()
        self._kubeconfig = kubeconfig
        self._egress = egress or EgressPolicy()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="relay", daemon=True)
        self.relay: Relay | None = None
        self._clients: list[openai.OpenAI] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return fn()
        return self.run(wrapper())

    def start(self) -> RelayThread:
        self._thread.start()

        async def setup() -> Relay:
            self.kube = KubeClient(KubeConfig.load(str(self._kubeconfig)))
            self.objects = ReferencedObjects(self.kube)
            self.transports = Transports(self._egress)
            kube = self.kube if self.settings.auth_mode is AuthMode.KUBERNETES else None
            relay = Relay(self.settings, self.registry, self.objects, self.transports, kube,
                          ejection_policy=self._ejection_policy)
            await relay.start()
            return relay

        self.relay = self.run(setup())
        return self

    def stop(self) -> None:
        async def teardown() -> None:
            assert self.relay is not None
            await self.relay.stop()
            await self.objects.close()
            await self.transports.close()
            await self.kube.close()
            await asyncio.sleep(0.1)  # let closed transports run their connection_lost
            current = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not current]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        for client in self._clients:
            client.close()
        try:
            self.run(teardown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    @property
    def url(self) -> str:
        assert self.relay is not None
        return self.relay.url

    @property
    def base(self) -> str:
        return self.url.removesuffix("/v1")

    def add(self, body: dict[str, Any]) -> ProviderView:
        """Upsert a provider and declare its references (what the watch feed does)."""
        view = view_from_body(body)

        def apply() -> None:
            self.registry.upsert(view)
            self.objects.set_references(view.ref, view.referenced_objects())

        self.call(apply)
        for ref in view.referenced_objects():  # wait for the watches' first list
            self.run(self.objects.get(ref))
        return view

    def client(self, api_key: str = "unused", **kwargs: Any) -> openai.OpenAI:
        client = openai.OpenAI(base_url=self.url, api_key=api_key, max_retries=0, timeout=30,
                               **kwargs)
        self._clients.append(client)
        return client

    def metric(self, name: str, **labels: str) -> float:
        assert self.relay is not None
        value = self.relay.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@pytest.fixture()
def relay_factory(kubeconfig: Path) -> Iterator[Callable[..., RelayThread]]:
    started: list[RelayThread] = []

    def make(egress: EgressPolicy | None = None, ejection_policy: EjectionPolicy | None = None,
             **settings: Any) -> RelayThread:
        settings.setdefault("port", 0)
        settings.setdefault("auth_mode", AuthMode.NONE)
        thread = RelayThread(RelaySettings(**settings), kubeconfig, egress,
                             ejection_policy).start()
        started.append(thread)
        return thread

    yield make
    for thread in started:
        thread.stop()


@pytest.fixture()
def relay(relay_factory: Callable[..., RelayThread]) -> RelayThread:
    return relay_factory()


@pytest.fixture()
def upstream() -> Iterator[DevServer]:
    with DevServer("vllm") as server:
        yield server


@pytest.fixture()
def make_upstream() -> Iterator[Callable[..., DevServer]]:
    servers: list[DevServer] = []

    def make(flavour: str = "vllm", **kwargs: Any) -> DevServer:
        server = DevServer(flavour, **kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def create_secret(k8s: k8s_client.ApiClient, namespace: str, name: str, key: str) -> None:
    k8s_client.CoreV1Api(k8s).create_namespaced_secret(namespace, {
        "metadata": {"name": name},
        "data": {"apiKey": base64.b64encode(key.encode()).decode()},
    })


def replace_secret(k8s: k8s_client.ApiClient, namespace: str, name: str, key: str) -> None:
    k8s_client.CoreV1Api(k8s).patch_namespaced_secret(name, namespace, {
        "data": {"apiKey": base64.b64encode(key.encode()).decode()},
    })


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
               ) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
