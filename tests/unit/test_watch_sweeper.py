"""When the watch sweeps (:mod:`chatprovider.inventory`): once after a burst of kopf's listing
events has settled, for each plural kopf listed, and again with back-off after a sweep fails
(the API server away for a moment), so a missed deletion is still forgotten afterwards."""

from __future__ import annotations

import asyncio
import logging

import pytest

import chatprovider.watch as watch_module
from chatprovider.kube.client import KubeClient
from chatprovider.kube.config import KubeConfig
from chatprovider.kube.objects import ReferencedObjects
from chatprovider.settings import OperatorSettings
from chatprovider.watch import ProviderWatch


def test_a_burst_of_listing_events_gives_one_sweep_and_a_failed_sweep_is_retried(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(watch_module, "SWEEP_QUIET", 0.05)
    swept: list[str] = []
    failures = {"chatquotas": 1}  # its first sweep fails

    async def main() -> None:
        config = KubeConfig(server="https://127.0.0.1:9")
        async with KubeClient(config) as kube:
            watch = ProviderWatch(OperatorSettings(), config, kube, ReferencedObjects(kube),
                                  lambda _t, _b: None, liveness=lambda: 0,
                                  others={"chatquotas": lambda _t, _b: None})

            async def sweep(plural: str) -> list[object]:
                swept.append(plural)
                if failures.get(plural):
                    failures[plural] -= 1
                    raise OSError("Connect call failed")
                return []

            monkeypatch.setattr(watch.inventory, "sweep", sweep)
            sweeper = asyncio.create_task(watch._sweep_after_kopf_lists())
            try:
                for _ in range(100):  # kopf lists 100 providers, then 1 quota
                    watch._kopf_listing("chatproviders")
                watch._kopf_listing("chatquotas")
                async with asyncio.timeout(10):
                    while watch.sweeps < 1:
                        await asyncio.sleep(0.01)
            finally:
                sweeper.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await sweeper

    with caplog.at_level(logging.WARNING, logger="chatprovider.watch"):
        asyncio.run(main())
    # One sweep of each for the whole burst; the quotas' failed sweep once more (providers, whose
    # sweep succeeded, are not swept again).
    assert swept == ["chatproviders", "chatquotas", "chatquotas"]
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning == ("could not check which chatquotas still exist after the watch listed "
                       "them again (Connect call failed); retrying in 1 s")
