"""Case 9: the operator at rest. ``idle_providers`` ChatProviders re-checked every
``idle_interval`` against the bench upstream, made Ready, then left alone for ``idle_seconds``.

Measured in the same run, on the same providers, with a fresh operator (``chatprovider run``,
default settings) watching only this case's namespace:

* to Ready: API writes per provider (``apiserver_request_total``: status writes, other writes
  to chatproviders, Events) and MODIFIED watch events per provider up to the one showing it
  Ready (each is a new resourceVersion, i.e. a stored write);
* at rest: the re-checks the upstream answered (one ``GET /v1/models`` each, counted per key:
  this case's Secret holds a key of its own), the API server's status write requests, the
  MODIFIED events delivered to a watcher, the providers whose resourceVersion moved, and the
  operator's CPU time and RSS. Nothing is changed meanwhile, so every write is one a re-check
  decided to make. The heartbeat (``status_heartbeat``, a re-write of ``lastCheck`` when it is
  older than that) is the only write allowed; it cannot come due in a window shorter than it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

import aiohttp

from bench import kube as k
from bench.procs import Proc
from bench.session import Session
from bench.stats import BackgroundLoad
from chatprovider.api.durations import format_duration
from chatprovider.settings import OperatorSettings

__all__ = ["run"]

NS = "bench-idle"
KEY = "bench-idle-0"
"""The key of this case's Secret: the upstream counts requests per key, so these are its own."""


async def _checks(http: aiohttp.ClientSession, url: str) -> int:
    """Requests the upstream has answered with this case's key so far."""
    async with http.get(url, headers={"Authorization": "Bearer bench-poll"}) as resp:
        seen = json.loads(await resp.read())
    return int(seen.get(KEY, [0.0, 0])[1])


async def _sample(proc: Proc, http: aiohttp.ClientSession, url: str, every: float,
                  t0: float, out: list[list[float]]) -> None:
    """Append [seconds, RSS MiB, CPU seconds, upstream checks] every ``every`` seconds."""
    while True:
        out.append([round(time.monotonic() - t0, 2), round(proc.rss(), 1), round(proc.cpu(), 2),
                    await _checks(http, url)])
        await asyncio.sleep(every)


async def run(s: Session) -> dict[str, Any]:
    cfg = s.cfg
    kube = s.kube
    assert kube is not None
    endpoint = f"{s.upstreams['fast'].base}/v1"
    keys_url = f"{s.upstreams['fast'].base}/_bench/keys"
    defaults = OperatorSettings()
    await k.create_namespace(kube, NS)
    await k.put_secret(kube, NS, KEY)
    watch = k.ReadyWatch(kube, NS)
    await watch.start()
    count = cfg.idle_providers
    out: dict[str, Any] = {"providers": count, "interval_s": cfg.idle_interval,
                           "idle_seconds": cfg.idle_seconds,
                           "heartbeat_s": defaults.status_heartbeat, "jitter": defaults.jitter}
    operator = s.stack.operator(s.kubeconfig, NS, tag="operator-idle")
    sampler: asyncio.Task[None] | None = None
    bg = BackgroundLoad().start()
    async with aiohttp.ClientSession() as http:
        try:
            await asyncio.sleep(2.0)
            # -- to Ready ---------------------------------------------------------------------
            before = s.writes()
            spelled = format_duration(dt.timedelta(seconds=cfg.idle_interval))
            bodies = [k.provider(NS, f"idle-{i}", endpoint, interval=spelled)
                      for i in range(count)]
            names = [b["metadata"]["name"] for b in bodies]
            t0 = time.monotonic()
            await k.create_providers(kube, bodies)
            ok = await watch.wait(names, timeout=max(120.0, count * 0.2))
            ready_s = max((watch.ready_at[n] for n in names if n in watch.ready_at),
                          default=t0) - t0
            await asyncio.sleep(2.0)  # writes still in flight after the last Ready
            delta = s.writes() - before
            to_ready = [watch.modified_to_ready[n] for n in names if n in watch.modified_to_ready]
            checks_at_ready = await _checks(http, keys_url)
            out["ready"] = {
                "all_ready": ok, "ready": len(to_ready), "all_ready_seconds": round(ready_s, 2),
                "status_writes_per_provider": round(delta.status_patches / count, 3),
                "other_writes_per_provider": round(delta.other_provider_writes / count, 3),
                "events_per_provider": round(delta.events / count, 3),
                "modified_to_ready_per_provider": round(sum(to_ready) / max(1, len(to_ready)), 3),
                "modified_to_ready_max": max(to_ready, default=0),
                "upstream_checks_per_provider": round(checks_at_ready / count, 3),
            }
            # -- at rest ----------------------------------------------------------------------
            versions = await k.resource_versions(kube, NS)
            modified0, events0 = len(watch.modified_at), watch.events.copy()
            writes0, checks0, cpu0 = s.writes(), await _checks(http, keys_url), operator.cpu()
            start = time.monotonic()
            samples: list[list[float]] = []
            sampler = asyncio.create_task(_sample(operator, http, keys_url,
                                                  cfg.idle_sample_seconds, start, samples))
            await asyncio.sleep(cfg.idle_seconds)
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
            elapsed = time.monotonic() - start
            checks = await _checks(http, keys_url) - checks0
            cpu = operator.cpu() - cpu0
            idle = s.writes() - writes0
            moved = sum(1 for n, v in (await k.resource_versions(kube, NS)).items()
                        if versions.get(n) != v)
            modified = len(watch.modified_at) - modified0
            rss = [x[1] for x in samples]
            out["idle"] = {
                "seconds": round(elapsed, 1),
                "rechecks": checks,
                "rechecks_per_provider": round(checks / count, 2),
                "expected_rechecks_per_provider": round(
                    elapsed / (cfg.idle_interval * (1 + defaults.jitter / 2)), 2),
                "status_writes": idle.status_patches,
                "other_writes": idle.other_provider_writes,
                "events_posted": idle.events,
                "modified_events": modified,
                "watch_events": dict(watch.events - events0),
                "providers_rv_changed": moved,
                "status_writes_per_recheck": round(idle.status_patches / checks, 4)
                if checks else None,
                "modified_per_recheck": round(modified / checks, 4) if checks else None,
                "heartbeat_due": elapsed >= defaults.status_heartbeat > 0,
                "operator_cpu_s": round(cpu, 2),
                "operator_cpu_pct": round(cpu / elapsed * 100, 2),
                "operator_cpu_ms_per_recheck": round(cpu / checks * 1000, 2) if checks else None,
                "operator_rss_start_mib": rss[0] if rss else None,
                "operator_rss_end_mib": rss[-1] if rss else None,
                "operator_rss_peak_mib": max(rss, default=None),
                "samples": samples,
                "modified_at": [round(t - start, 2) for t in watch.modified_at[modified0:]],
            }
        finally:
            out["background_cpu_pct"] = bg.stop()
            if sampler is not None:
                sampler.cancel()
                await asyncio.gather(sampler, return_exceptions=True)
            s.stack.stop(operator)
            await watch.stop()
    s.results["9"] = out
    return out
