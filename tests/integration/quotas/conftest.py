"""Quotas enforced by real relay processes (``chatprovider relay``) on the real API server, in
front of a real model (llama-server with Gemma 3 270M), counting in a real redis-server.

:class:`QuotaSetup` puts one ChatProvider (labelled ``pool: shared-gpu``) in a fresh namespace,
pointing at llama-server, marks it Ready as the operator would (no operator runs: its probes
would only add load to the two shared cores), and starts relays that count in one Redis.
ChatQuotas are applied and deleted with kubectl, as a user would.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.integration.controller.conftest import Providers
from tests.realupstreams import LLAMA_MODEL_ALIAS, RealUpstream
from tests.reliability.harness import ChatproviderProcess, wait_for

from chatprovider.counters.redis_store import RedisCounterStore
from chatprovider.domain.quota.limits import quota_prefix
from chatprovider_tools.redisserver import RedisServer, RedisServerError

__all__ = ["QuotaSetup", "charged", "seconds_left_in_minute"]

PROVIDER = "vllm"


def seconds_left_in_minute() -> float:
    return 60.0 - time.time() % 60.0


def wait_for_room_in_minute(seconds: float) -> None:
    """Wait until the current UTC minute has ``seconds`` left (a per-minute window must not
    turn during what follows)."""
    if seconds_left_in_minute() < seconds:
        wait_for(lambda: seconds_left_in_minute() >= seconds, timeout=seconds + 1,
                 interval=0.2, what="the next minute")


def charged(redis_url: str, namespace: str, name: str) -> dict[str, int]:
    """The quota's live counters in Redis: ``subject|metric|window`` -> value."""
    async def scan() -> dict[str, int]:
        store = RedisCounterStore(redis_url)
        try:
            prefix = quota_prefix(f"{namespace}/{name}")
            return {k.removeprefix(prefix): v
                    for k, v in (await store.scan(prefix, time.time())).items()}
        finally:
            await store.aclose()
    return asyncio.run(scan())


def tokens_charged(redis_url: str, namespace: str, name: str, window: str = "day") -> int:
    return sum(v for k, v in charged(redis_url, namespace, name).items()
               if f"|tokens|{window}:" in k)


class QuotaSetup:
    """One namespace with the provider ``vllm``, relays, and kubectl for quotas."""

    def __init__(self, k8s: Any, kubectl: Any, kubeconfig: Path, namespace: str,
                 upstream: RealUpstream, redis: RedisServer, logs: Path) -> None:
        self.kubectl, self.kubeconfig, self.ns = kubectl, kubeconfig, namespace
        self.upstream, self.redis, self.logs = upstream, redis, logs
        self.providers = Providers(k8s, namespace)
        self.relays: list[ChatproviderProcess] = []
        self.model = f"{namespace}/{PROVIDER}/{LLAMA_MODEL_ALIAS}"
        self.providers.put_secret("llm-key", {"apiKey": upstream.api_key})
        self.providers.api.create_namespaced_custom_object(
            "ai.chatprovider.dev", "v1alpha1", namespace, "chatproviders",
            {"apiVersion": "ai.chatprovider.dev/v1alpha1", "kind": "ChatProvider",
             "metadata": {"name": PROVIDER, "labels": {"pool": "shared-gpu"}},
             # one slot serves 50 racing callers in turn: the default 30 s to the first byte
             # is too short for the last in the queue
             "spec": {"endpoint": upstream.url, "apiKeySecretRef": {"name": "llm-key"},
                      "timeouts": {"request": "5m"}}})
        generation = self.providers.get(PROVIDER)["metadata"]["generation"]
        self.providers.api.patch_namespaced_custom_object_status(
            "ai.chatprovider.dev", "v1alpha1", namespace, "chatproviders", PROVIDER,
            {"status": {"observedGeneration": generation,
                        "models": [{"id": LLAMA_MODEL_ALIAS}],
                        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                        "message": "marked Ready by the test",
                                        "observedGeneration": generation,
                                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})

    # -- relays -----------------------------------------------------------------------------
    def relay(self, *extra: str, auth: str = "none", wait_ready: bool = True,
              redis: bool = True) -> ChatproviderProcess:
        flags = [f"--quota-redis-url={self.redis.url}"] if redis else []
        process = ChatproviderProcess(
            self.kubeconfig, self.logs / f"relay-{len(self.relays)}.log", command="relay",
            namespaces=[self.ns], relay_auth=auth, extra=[*flags, *extra])
        self.relays.append(process)
        process.start(wait_ready=wait_ready)
        if wait_ready:  # ready: it has listed providers and quotas; wait until it routes
            wait_for(lambda: self.chat(process, max_tokens=1).status_code == 200, timeout=30,
                     what="the relay to route to the provider")
        return process

    def stop(self) -> None:
        for relay in self.relays:  # all at once: each takes seconds to wind down
            if relay.proc is not None and relay.proc.poll() is None:
                relay.proc.send_signal(signal.SIGTERM)
        for relay in self.relays:
            try:
                relay.stop(timeout=15)
            except AssertionError:
                pass

    # -- quotas -----------------------------------------------------------------------------
    def apply_quota(self, name: str, limits: dict[str, int], *, scope: str = "Shared",
                    subjects: list[dict[str, str]] | None = None,
                    providers: dict[str, Any] | None = None) -> None:
        quota = {"apiVersion": "ai.chatprovider.dev/v1alpha1", "kind": "ChatQuota",
                 "metadata": {"name": name, "namespace": self.ns},
                 "spec": {"providers": providers or {"selector": {"matchLabels":
                                                                  {"pool": "shared-gpu"}}},
                          "subjects": subjects or [{"kind": "Group",
                                                    "name": "system:unauthenticated"}],
                          "scope": scope, "limits": limits}}
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(quota))

    def delete_quota(self, name: str) -> None:
        self.kubectl("delete", "chatquota", name, "-n", self.ns)

    def tokens_charged(self, name: str, window: str = "day") -> int:
        return tokens_charged(self.redis.url, self.ns, name, window)

    # -- requests ---------------------------------------------------------------------------
    def body(self, max_tokens: int = 4, content: str = "Say hi.", **extra: Any
             ) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": content}], **extra}

    def chat(self, relay: ChatproviderProcess, *, timeout: float = 60, token: str | None = None,
             **body: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(f"{relay.url}/v1/chat/completions", json=self.body(**body),
                          headers=headers, timeout=timeout)


def sse_events(text: str) -> list[Any]:
    """The ``data:`` payloads of a stream (JSON decoded, ``[DONE]`` as the string)."""
    out: list[Any] = []
    for event in text.split("\n\n"):
        for line in event.splitlines():
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the module (each test's quota has counters of its own)."""
    try:
        server = RedisServer()
        server.start()
    except RedisServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture()
def quota_setup(k8s, kubectl, kubeconfig, chatprovider_crd, namespace, llama_server,
                redis_server, tmp_path) -> Iterator[QuotaSetup]:
    setup = QuotaSetup(k8s, kubectl, kubeconfig, namespace, llama_server, redis_server,
                       tmp_path)
    try:
        yield setup
    finally:
        setup.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
