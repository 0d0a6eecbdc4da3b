"""Fixtures for operator tests: the operator running in-process against the real control plane."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s_client

from chatprovider.controller.app import OperatorApp
from chatprovider.settings import OperatorSettings


def own_lease(settings: OperatorSettings) -> OperatorSettings:
    """``settings`` with a Lease of their own (operators of earlier tests, some killed with
    their Lease held, must not make this one wait for the leadership)."""
    if settings.lease_name != OperatorSettings().lease_name:
        return settings
    return settings.model_copy(update={"lease_name": f"test-{uuid.uuid4().hex[:12]}"})


class OperatorThread:
    """The operator's event loop in a background thread (as KopfRunner does, for our app)."""

    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = own_lease(settings)
        if self.settings.health_port == OperatorSettings().health_port:
            # No /healthz on a fixed port: another run on this machine may hold it (kopf's
            # health reporter then fails, and the operator with it).
            self.settings = self.settings.model_copy(update={"health_port": 0})
        self.app = OperatorApp(self.settings)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="operator", daemon=True)
        self._error: BaseException | None = None

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await self.app.run(self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by stop()
            self._error = exc

    def start(self) -> OperatorThread:
        self._thread.start()
        deadline = time.monotonic() + 30
        while self.app.reconciler is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.app.reconciler is not None, f"operator did not start: {self._error!r}"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "operator did not stop within 30s"
        if self._error is not None and not isinstance(self._error, asyncio.CancelledError):
            raise self._error

    @property
    def stats(self) -> dict[str, int]:
        assert self.app.reconciler is not None
        return self.app.reconciler.stats


@pytest.fixture()
def operator(kubeconfig, chatprovider_crd, namespace) -> Iterator[OperatorThread]:
    """The operator, watching only this test's namespace (envtest never deletes namespaces, so
    a cluster-wide operator would also keep checking every earlier test's providers)."""
    settings = OperatorSettings(kubeconfig=str(kubeconfig), namespaces=(namespace,),
                                min_retry_seconds=1.0, log_level="DEBUG",
                                health_port=0)  # 8081 may be taken by another run
    runner = OperatorThread(settings).start()
    yield runner
    runner.stop()
    gc.collect()  # surface unclosed-resource warnings in the test that caused them


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1,
             what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


class Providers:
    """Create, read and change ChatProviders and their Secrets in one namespace."""

    def __init__(self, k8s: k8s_client.ApiClient, namespace: str) -> None:
        self.api = k8s_client.CustomObjectsApi(k8s)
        self.core = k8s_client.CoreV1Api(k8s)
        self.ns = namespace

    def create(self, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None
               ) -> dict[str, Any]:
        body = {"apiVersion": "ai.chatprovider.dev/v1alpha1", "kind": "ChatProvider",
                "metadata": {"name": name, "annotations": annotations or {}}, "spec": spec}
        return self.api.create_namespaced_custom_object(  # type: ignore[no-any-return]
            "ai.chatprovider.dev", "v1alpha1", self.ns, "chatproviders", body)

    def get(self, name: str) -> dict[str, Any]:
        return self.api.get_namespaced_custom_object(  # type: ignore[no-any-return]
            "ai.chatprovider.dev", "v1alpha1", self.ns, "chatproviders", name)

    def patch(self, name: str, body: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object(
            "ai.chatprovider.dev", "v1alpha1", self.ns, "chatproviders", name, body)

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(
            "ai.chatprovider.dev", "v1alpha1", self.ns, "chatproviders", name)

    def condition(self, name: str, type_: str = "Ready") -> dict[str, Any] | None:
        for cond in (self.get(name).get("status") or {}).get("conditions") or []:
            if cond["type"] == type_:
                return cond  # type: ignore[no-any-return]
        return None

    def wait_reason(self, name: str, reason: str, type_: str = "Ready",
                    timeout: float = 15.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            cond = self.condition(name, type_)
            return cond if cond and cond["reason"] == reason else None
        return wait_for(check, timeout, what=f"{name} {type_} reason {reason}")  # type: ignore

    def put_secret(self, name: str, data: dict[str, str]) -> None:
        body = {"metadata": {"name": name}, "stringData": data}
        try:
            self.core.create_namespaced_secret(self.ns, body)
        except k8s_client.ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_secret(name, self.ns, body)

    def put_configmap(self, name: str, data: dict[str, str]) -> None:
        body = {"metadata": {"name": name}, "data": data}
        try:
            self.core.create_namespaced_config_map(self.ns, body)
        except k8s_client.ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_config_map(name, self.ns, body)

    def events(self, name: str) -> list[dict[str, Any]]:
        items = self.core.list_namespaced_event(
            self.ns, field_selector=f"involvedObject.name={name}").items
        return [{"reason": e.reason, "type": e.type, "message": e.message} for e in items]

    def dump(self, name: str) -> str:
        return yaml.safe_dump(self.get(name))


@pytest.fixture()
def providers(k8s, namespace) -> Providers:
    return Providers(k8s, namespace)

