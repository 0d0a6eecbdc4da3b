"""Concurrency limit, settings validation, and per-request key reads (hot rotation)."""

from __future__ import annotations

import asyncio

import pytest

from chatprovider.domain.apis import Operation
from chatprovider.domain.openai_errors import OpenAIError
from chatprovider.domain.routing import ProviderRef
from chatprovider.kube.objects import ObjectSnapshot
from chatprovider.registry import ObjectRef, view_from_body
from chatprovider.relay import RelaySettings
from chatprovider.relay.limiter import ProviderBusy, ProviderLimiter
from chatprovider.relay.target import Targets

KEY = ProviderRef("ns", "p")


async def _enter(limiter: ProviderLimiter) -> None:
    async with limiter.slot(KEY):
        pass


def test_over_the_limit_a_request_waits_then_is_refused() -> None:
    async def main() -> None:
        busy: list[ProviderRef] = []
        limiter = ProviderLimiter(1, 0.2, on_busy=busy.append)
        async with limiter.slot(KEY):
            with pytest.raises(ProviderBusy) as info:
                async with limiter.slot(KEY):
                    pass
            assert info.value.status == 429 and info.value.headers == {"Retry-After": "1"}
        assert busy == [KEY]

        release = asyncio.Event()

        async def hold() -> None:
            async with limiter.slot(KEY):
                await release.wait()

        holder = asyncio.ensure_future(hold())
        await asyncio.sleep(0)  # the holder takes the slot
        waiter = asyncio.ensure_future(_enter(limiter))
        await asyncio.sleep(0)
        assert not waiter.done()  # queued behind the holder, within the timeout
        release.set()
        await waiter
        assert holder.done()
        async with ProviderLimiter(1, 0).slot(ProviderRef("other", "p")):
            pass

    asyncio.run(main())


@pytest.mark.parametrize("changes", [
    {"port": 70000}, {"max_body_bytes": 0}, {"provider_concurrency": -1},
    {"keepalive_interval": -1.0},
])
def test_settings_refuse_nonsense(changes: dict) -> None:
    with pytest.raises(ValueError):
        RelaySettings(**changes)


class Objects:
    def __init__(self) -> None:
        self.snapshots: dict[ObjectRef, ObjectSnapshot] = {}

    def peek(self, ref: ObjectRef) -> ObjectSnapshot | None:
        return self.snapshots.get(ref)

    async def get(self, ref: ObjectRef) -> ObjectSnapshot:
        return self.snapshots.get(ref) or ObjectSnapshot(ref, exists=False)


def _view(**spec: object):
    return view_from_body({
        "metadata": {"namespace": "ns", "name": "p", "generation": 1, "resourceVersion": "7"},
        "spec": {"endpoint": "http://vllm.ns.svc:8000", **spec},
    })


def test_the_key_is_read_on_every_request_so_a_rotation_needs_no_restart() -> None:
    async def main() -> None:
        objects = Objects()
        targets = Targets(objects)  # type: ignore[arg-type]
        view = _view(apiKeySecretRef={"name": "llm", "key": "apiKey"},
                     headers=[{"name": "X-Org", "value": "o"}],
                     timeouts={"connect": "2s", "request": "1m", "streamIdle": "1500ms"})
        ref = ObjectRef("Secret", "ns", "llm")
        with pytest.raises(OpenAIError) as missing:
            await targets.target(view, Operation.CHAT)
        assert missing.value.status == 503 and "apiKey" not in missing.value.message
        objects.snapshots[ref] = ObjectSnapshot(ref, True, {"apiKey": b"sk-first\n"}, "1")
        first = await targets.target(view, Operation.CHAT)
        assert first.api_key == "sk-first" and "sk-first" not in repr(first)
        assert first.url == "http://vllm.ns.svc:8000/v1/chat/completions"
        assert (first.connect, first.first_byte, first.idle) == (2.0, 60.0, 1.5)
        assert first.headers == (("X-Org", "o"),)
        objects.snapshots[ref] = ObjectSnapshot(ref, True, {"apiKey": b"two"}, "2")
        assert (await targets.target(view, Operation.EMBEDDINGS)).api_key == "two"

    asyncio.run(main())


def test_proxy_and_no_proxy() -> None:
    async def main() -> None:
        targets = Targets(Objects())  # type: ignore[arg-type]
        proxied = _view(proxy={"url": "http://proxy.corp:3128", "noProxy": [".example"]})
        assert (await targets.target(proxied, Operation.CHAT)).profile.proxy == \
            "http://proxy.corp:3128"
        direct = _view(proxy={"url": "http://proxy.corp:3128", "noProxy": [".svc"]})
        direct = view_from_body({"metadata": {"namespace": "ns", "name": "q"},
                                 "spec": direct.spec.model_dump(by_alias=True)})
        assert (await targets.target(direct, Operation.CHAT)).profile.proxy is None

    asyncio.run(main())
