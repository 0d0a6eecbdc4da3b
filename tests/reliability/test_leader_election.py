"""Two operator processes with leader election, as the chart runs them (2 replicas, one
ServiceAccount, its RBAC): kill -9 the leader in the middle of reconciling 100 providers. The
other takes over once the Lease expires and every provider converges; the API server's audit
log shows that the two never wrote status at the same time."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

from kubernetes import client as k8s_client

from chatprovider_tools.controlplane.plane import write_kubeconfig
from chatprovider_tools.devserver import DevServer
from tests.integration.controller.conftest import Providers

from .conftest import CHART_LEASE as LEASE
from .conftest import CHART_LEASE_FLAGS, RELEASE_NS
from .harness import ChatproviderProcess, wait_for
from .test_operator_faults import ready_reasons

DURATION, RENEW_DEADLINE, RETRY = 4.0, 3.0, 0.5
PROVIDERS = 100


def _jti(token: str) -> str:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["jti"])


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _credential(event: dict) -> str | None:
    """The token an audited request came with (``JTI=...``: one per minted token)."""
    ids = ((event.get("user") or {}).get("extra") or {}).get(
        "authentication.kubernetes.io/credential-id") or []
    return ids[0].removeprefix("JTI=") if ids else None


def test_kill_9_of_the_leader_mid_reconcile(secured_cluster, tmp_path, figure) -> None:
    cluster = secured_cluster
    core = k8s_client.CoreV1Api(cluster.api)
    leases = k8s_client.CoordinationV1Api(cluster.api)
    ns = f"le-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": ns}})
    providers = Providers(cluster.api, ns)
    try:  # the chart's Lease, from an earlier run against this session's cluster
        leases.delete_namespaced_lease(LEASE, RELEASE_NS)
    except k8s_client.ApiException as exc:
        assert exc.status == 404, exc

    # Two replicas of one ServiceAccount (the chart's), each with a token of its own: the
    # audit log tells them apart by the token's credential id.
    sa = cluster.users["operator"].rsplit(":", 1)[1]
    replicas: dict[str, ChatproviderProcess] = {}
    jtis: dict[str, str] = {}
    for name in ("a", "b"):
        token = core.create_namespaced_service_account_token(
            sa, RELEASE_NS, {"spec": {"expirationSeconds": 3600}}).status.token
        jtis[name] = _jti(token)
        kc = write_kubeconfig(tmp_path / f"kubeconfig-{name}", cluster.plane.server,
                              cluster.plane.creds.ca_cert, token, f"operator-{name}")
        replicas[name] = ChatproviderProcess(
            kc, tmp_path / f"operator-{name}.log", lease=LEASE,  # cluster-wide, as the chart
            env={"POD_ID": f"operator-{name}"},
            extra=[*CHART_LEASE_FLAGS, "--workers=4",
                   f"--lease-duration={DURATION}", f"--lease-renew-deadline={RENEW_DEADLINE}",
                   f"--lease-retry-period={RETRY}"])
    a, b = replicas["a"], replicas["b"]
    started = dt.datetime.now(dt.UTC)  # the audit log is shared with the other tests

    def lease() -> dict:
        try:
            return leases.read_namespaced_lease(LEASE, RELEASE_NS).to_dict()["spec"]
        except k8s_client.ApiException as exc:
            if exc.status == 404:
                return {}
            raise

    try:
        with DevServer("generic", models=["m"]) as up:
            up.behaviour.delay_first_byte = 0.3  # slow checks: the kill lands mid-reconcile
            for i in range(PROVIDERS):
                providers.create(f"p{i:03d}", {"endpoint": up.base_url})
            a.start()
            wait_for(lambda: lease().get("holder_identity") == "operator-a", timeout=30,
                     what="operator-a to lead")
            b.start()  # ready: its embedded relay has listed the providers
            at_kill = wait_for(
                lambda: (k := sum(r == "Ready" for r in ready_reasons(providers).values()))
                >= 25 and k, timeout=90, interval=0.05, what="a quarter of the providers Ready")
            assert lease()["holder_identity"] == "operator-a"  # b waited all along
            a.kill9()
            killed_at = dt.datetime.now(dt.UTC)
            last_renewal = lease()["renew_time"]  # a's last, as it died holding the Lease
            taken = wait_for(lambda: (spec := lease()).get("holder_identity") == "operator-b"
                             and spec, timeout=6 * DURATION, interval=0.1,
                             what="operator-b to take the Lease over")
            wait_for(lambda: set(ready_reasons(providers).values()) == {"Ready"}
                     and len(ready_reasons(providers)) == PROVIDERS,
                     timeout=120, interval=0.2, what=f"all {PROVIDERS} providers Ready")
            converged_at = dt.datetime.now(dt.UTC)
            checks = sum(1 for r in up.requests if r.path == "/v1/models")
    finally:
        for replica in (a, b):
            if replica.proc is not None:
                replica.stop(timeout=15)
    assert b.proc is not None and b.proc.returncode == 0, b.tail()

    # The Lease: b acquired it no earlier than a lease duration after a's last renewal (so it
    # never led beside a), and well within two.
    gap = (taken["acquire_time"] - last_renewal).total_seconds()
    assert DURATION <= gap <= 2 * DURATION, (gap, taken)
    assert taken["lease_transitions"] >= 1

    # The audit log: whose status writes, and when.
    mine = [e for e in cluster.plane.audit() if e["user"]["username"] == cluster.users["operator"]
            and (e.get("objectRef") or {}).get("resource") == "chatproviders"]
    events = [e for e in mine if e["objectRef"].get("namespace") == ns]
    writes = {name: sorted((e for e in events
                            if e["objectRef"].get("subresource") == "status"
                            and e["verb"] in ("patch", "update", "create")
                            and _credential(e) == jti), key=lambda e: e["requestReceivedTimestamp"])
              for name, jti in jtis.items()}
    lists_by_b = [e for e in mine if e["verb"] == "list" and _credential(e) == jtis["b"]
                  and _time(e["requestReceivedTimestamp"]) < killed_at]
    # Positive controls: both replicas wrote, and b listed the providers while a led.
    assert writes["a"] and writes["b"], {k: len(v) for k, v in writes.items()}
    assert lists_by_b, "the audit log shows no LIST of ChatProviders by operator-b"
    assert all(_credential(e) in jtis.values() for e in mine if _time(
        e["requestReceivedTimestamp"]) >= started), "a request by a third identity"
    # The promise: every write by a ended before b's first one was received.
    a_last = max(_time(e["stageTimestamp"]) for e in writes["a"])
    b_first = min(_time(e["requestReceivedTimestamp"]) for e in writes["b"])
    assert a_last < b_first, (a_last, b_first)
    assert b_first > killed_at
    # And hardly a write wasted on the takeover: the new leader rewrote none of the providers
    # the old one had written, but those whose last writes (at most one per worker) its watch
    # had not delivered yet when it took over; each replica wrote each provider once.
    by_a = [e["objectRef"]["name"] for e in writes["a"]]
    by_b = [e["objectRef"]["name"] for e in writes["b"]]
    assert len(set(by_a) & set(by_b)) <= 4, sorted(set(by_a) & set(by_b))
    assert len(by_a) == len(set(by_a)) and len(by_b) == len(set(by_b)), (by_a, by_b)
    assert set(by_a) | set(by_b) == {f"p{i:03d}" for i in range(PROVIDERS)}
    figure(f"kill -9 of the leading operator (2 replicas as the chart's ServiceAccount, "
           f"{PROVIDERS} providers, 4 workers, 0.3 s per check; Lease {DURATION:g} s / renew "
           f"{RENEW_DEADLINE:g} s / retry {RETRY:g} s)",
           f"killed with {at_kill}/{PROVIDERS} Ready; the other replica acquired the Lease "
           f"{gap:.1f} s after the leader's last renewal and made all {PROVIDERS} Ready "
           f"{(converged_at - killed_at).total_seconds():.1f} s after the kill; audit log: "
           f"{len(writes['a'])} status writes by the old leader, {len(writes['b'])} by the new "
           f"one, the first of them {(b_first - a_last).total_seconds():.1f} s after the "
           f"old leader's last (none interleaved); {checks} upstream checks")
