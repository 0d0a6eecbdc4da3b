"""The benchmark suite's harness works: ``python -m bench --smoke`` runs every case at tiny
sizes against real processes (control plane, upstreams, operator, relay, LiteLLM, nginx) and
produces a complete result set. No timing is asserted: this machine's numbers are the report's
business, not the test's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CHATPROVIDER_CACHE") or Path.home() / ".cache" / "chatprovider")
LITELLM = CACHE / "upstreams" / "litellm-venv" / "bin" / "litellm"
OHA = CACHE / "cargo" / "bin" / "oha"


def _missing() -> list[str]:
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if not OHA.exists():
        missing.append("oha")
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        missing.append("nginx")
    if not LITELLM.exists():
        missing.append("LiteLLM's proxy")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        missing.append("matplotlib")
    return missing


@pytest.mark.timeout(660)
def test_smoke_runs_every_case(tmp_path: Path) -> None:
    if missing := _missing():
        pytest.fail(f"missing {', '.join(missing)}: run `bash bench/install.sh`", pytrace=False)
    results = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--code", "worktree", "--results",
         str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,  # ~150 s on a 2-CPU machine
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((results / "results.json").read_text())
    r = data["results"]
    assert set(r) == {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}
    # 11: every caller's requests answered at each concurrency, through each path
    assert all(row[name]["n"] == row["concurrency"] * r["11"]["per_caller"]
               and row[name]["errors"] == 0
               for row in r["11"]["rows"] for name in ("direct", "relay", "nginx"))
    # 10: requests under a quota, counters in memory and in Redis, without and with the
    # relay's Kubernetes authentication, beside ungoverned ones
    assert all(r["10"][f"{relay}{quota}"]["n"] > 0 and r["10"][f"{relay}{quota}"]["errors"] == 0
               for relay in ("memory", "redis", "auth-memory", "auth-redis")
               for quota in ("", "+quota"))
    # 1, 2: every request answered, on both paths
    assert r["1"]["relay"]["n"] > 0 and r["1"]["relay"]["errors"] == 0
    assert all(r["1"][ref]["n"] > 0  # same-run references
               for ref in ("nginx", "litellm", "portkey"))
    assert all(row["relay"]["sent"] > 0 for row in r["2"]["rows"])
    # 3: a frontier search ran against all five targets
    assert set(r["3"]["targets"]) == {"direct", "relay", "litellm", "portkey", "nginx"}
    assert all(t["steps"] for t in r["3"]["targets"].values())
    # 3: and again with the compiled generator against the static upstream, every request of
    # every window answered
    compiled = r["3"]["compiled"]["targets"]
    assert set(compiled) == {"direct", "nginx", "relay"}
    assert all(t["steps"] and all(step["errors"] == 0 for step in t["steps"])
               for t in compiled.values())
    # 4, 5: streams were tracked frame by frame through the relay
    assert r["4"]["relay"]["streams"] > 0 and r["4"]["relay"]["frames"] > 0
    assert all(row["relay"]["completed"] == row["streams"] for row in r["5"]["rows"])
    # 6: RSS was sampled
    assert r["6"]["idle_mib"] > 0 and r["6"]["samples"]
    # 7: providers became Ready and the API server's write counters were read
    assert r["7"]["bulk"]["all_ready"] and r["7"]["bulk"]["status_patches_per_provider"] > 0
    assert "status_patches" in r["7"]["restart"]
    # 8: the new keys reached the upstream
    assert r["8"]["picked_up"] == r["8"]["trials"]
    # 9: the writes to Ready were seen by both counters (so they would see writes at rest),
    # and every provider was re-checked at rest, at the upstream
    ready, idle = r["9"]["ready"], r["9"]["idle"]
    assert ready["all_ready"] and ready["status_writes_per_provider"] > 0
    assert ready["modified_to_ready_per_provider"] > 0
    assert idle["rechecks"] >= r["9"]["providers"] and idle["samples"]
    assert idle["status_writes_per_recheck"] is not None
    assert "| case | metric |" not in proc.stdout  # smoke writes no report ...
    assert "case metric" in proc.stdout              # ... but prints the table
    assert list((results / "figures").glob("*.png"))


@pytest.mark.timeout(300)
def test_the_governed_variant_authenticates_and_meters_every_relayed_request(
        tmp_path: Path) -> None:
    """``--relay-variant governed``: the relay's cases run against a relay that authenticates
    with Kubernetes and meters under a ChatQuota; every request is answered, as the
    ServiceAccount the bench calls with."""
    if missing := _missing():
        pytest.fail(f"missing {', '.join(missing)}: run `bash bench/install.sh`", pytrace=False)
    results = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--cases", "1,11", "--relay-variant",
         "governed", "--code", "worktree", "--results", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((results / "results.json").read_text())
    r = data["results"]
    assert r["1"]["relay"]["n"] > 0 and r["1"]["relay"]["errors"] == 0
    assert all(row["relay"]["errors"] == 0 for row in r["11"]["rows"])
    assert "--relay-auth kubernetes" in data["meta"]["relay"]
    served = [line for line in (results / "logs" / "relay.log").read_text().splitlines()
              if "chatprovider.relay.access" in line and " 200 " in line]
    assert served and all("user=system:serviceaccount:bench-relay:bench-caller" in line
                          for line in served)


@pytest.mark.timeout(300)
def test_the_hot_path_comparison_runs_every_stack(tmp_path: Path) -> None:
    """``python -m bench.hotpath.compare`` at its smallest: every stack relays every request
    of wrk's runs (no timing asserted)."""
    missing = _missing() + [name for name in ("granian", "httptools") if subprocess.run(
        [sys.executable, "-c", f"import {name}"], capture_output=True).returncode]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `bash bench/install.sh`", pytrace=False)
    out = tmp_path / "hotpath.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.hotpath.compare", "--seconds", "1", "--rounds", "1",
         "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    targets = json.loads(out.read_text())["targets"]
    assert set(targets) == {"direct", "aiohttp", "aiohttp+raw", "granian", "granian+raw",
                            "httptools", "nginx"}
    for name, target in targets.items():
        for run in ("c1", "c64"):
            assert target[run]["rps"] > 0 and target[run]["errors"] == 0, (name, target)
