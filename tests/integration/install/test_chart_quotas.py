"""The chart's quota counters (an existing Redis, or one it deploys) and its Grafana dashboard:
rendered with helm, checked against the values schema, and accepted by the real API server
(server-side dry run, a namespace that enforces the restricted Pod Security Standard)."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml
from kubernetes import client as k8s_client

from .conftest import CHART, ROOT, env_of, find, one, write_values

DEPLOYED = {"quotas": {"redis": {"deploy": True}}}
URL_ENV = "CHATPROVIDER_QUOTA_REDIS_URL"


def _containers(objects, component):
    return [d["spec"]["template"]["spec"]["containers"][0]
            for d in find(objects, "Deployment")
            if d["metadata"]["labels"]["app.kubernetes.io/component"] == component]


def test_without_redis_the_counters_are_in_memory(render) -> None:
    objects = render({"relay": {"mode": "separate"}})
    assert not [d for d in find(objects, "Deployment") if d["metadata"]["name"].endswith("redis")]
    for component in ("operator", "relay"):
        assert env_of(_containers(objects, component)[0])[URL_ENV] == ""


def test_an_existing_redis_is_pointed_at_with_its_password_from_a_secret(render) -> None:
    objects = render({"relay": {"mode": "separate"}, "quotas": {"redis": {
        "url": "redis://valkey.shared:6379/2", "passwordSecret": {"name": "valkey-auth"}}}})
    for component in ("operator", "relay"):
        container = _containers(objects, component)[0]
        assert env_of(container)[URL_ENV] == "redis://valkey.shared:6379/2"
        password = next(e for e in container["env"]
                        if e["name"] == "CHATPROVIDER_QUOTA_REDIS_PASSWORD")
        assert password["valueFrom"] == {"secretKeyRef": {"name": "valkey-auth",
                                                          "key": "password"}}
    assert "valkey.shared" not in yaml.safe_dump(find(objects, "Deployment")).replace(
        "redis://valkey.shared:6379/2", "")


def test_a_deployed_redis_is_small_restricted_without_persistence_and_the_default_url(
        render) -> None:
    objects = render({**DEPLOYED, "relay": {"mode": "separate"}}, namespace="llm-system")
    deployment = one(objects, "Deployment", "cpo-chatprovider-operator-redis")
    service = one(objects, "Service", "cpo-chatprovider-operator-redis")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"].startswith("docker.io/valkey/valkey:")
    args = container["args"]
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"
    assert "--requirepass" not in args
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False
    assert [v["emptyDir"] for v in spec["volumes"]] == [{"sizeLimit": "64Mi"}]
    assert service["spec"]["ports"][0]["port"] == 6379
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    url = "redis://cpo-chatprovider-operator-redis.llm-system.svc:6379/0"
    for component in ("operator", "relay"):
        assert env_of(_containers(objects, component)[0])[URL_ENV] == url
    # an explicit url wins over the deployed server's
    explicit = render({"quotas": {"redis": {"deploy": True, "url": "redis://mine:6379/0"}}})
    assert env_of(_containers(explicit, "operator")[0])[URL_ENV] == "redis://mine:6379/0"


def test_a_deployed_redis_requires_the_password_of_the_secret(render) -> None:
    objects = render({"quotas": {"redis": {"deploy": True, "passwordSecret": {
        "name": "counters", "key": "pw"}}}, "networkPolicy": {"enabled": True}})
    container = one(objects, "Deployment", "cpo-chatprovider-operator-redis")["spec"][
        "template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert container["env"] == [{"name": "REDIS_PASSWORD", "valueFrom": {
        "secretKeyRef": {"name": "counters", "key": "pw"}}}]
    policy = one(objects, "NetworkPolicy", "cpo-chatprovider-operator-redis")
    sources = [peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
               for peer in policy["spec"]["ingress"][0]["from"]]
    assert sources == ["operator", "relay"]


def test_the_deployed_redis_passes_the_api_server_and_restricted_pod_security(
        render, kubectl, k8s) -> None:
    ns = f"psa-{uuid.uuid4().hex[:8]}"
    k8s_client.CoreV1Api(k8s).create_namespace({"metadata": {"name": ns, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest"}}})
    objects = render({**DEPLOYED, "networkPolicy": {"enabled": True},
                      "grafana": {"dashboards": {"enabled": True}}},
                     release=f"r{uuid.uuid4().hex[:6]}", namespace=ns)
    mine = [o for o in objects if o["kind"] in ("Deployment", "Service", "NetworkPolicy")
            and o["metadata"]["name"].endswith("-redis")] + find(objects, "ConfigMap")
    assert len(mine) == 4
    proc = kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                   input=yaml.safe_dump_all(mine))
    assert proc.stdout.count("created (server dry run)") == 4
    deployment = next(o for o in mine if o["kind"] == "Deployment")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "redis", "namespace": ns},
           "spec": deployment["spec"]["template"]["spec"]}
    created = kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod),
                      check=False)
    assert created.returncode == 0 and "Warning" not in created.stderr, created.stderr


def test_the_grafana_dashboard_is_shipped_for_the_sidecar_when_asked(render) -> None:
    assert not find(render(), "ConfigMap")
    objects = render({"grafana": {"dashboards": {"enabled": True, "namespace": "monitoring",
                                                 "annotations": {"grafana_folder": "LLM"}}}})
    config_map = one(objects, "ConfigMap", "cpo-chatprovider-operator-dashboards")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "LLM"}
    shipped = json.loads(config_map["data"]["chatprovider-relay.json"])
    source = json.loads((ROOT / "dashboards" / "chatprovider-relay.json").read_text())
    assert shipped == source


def test_the_charts_copy_of_the_dashboard_is_current() -> None:
    copy = CHART / "files" / "dashboards" / "chatprovider-relay.json"
    source = ROOT / "dashboards" / "chatprovider-relay.json"
    assert copy.read_text() == source.read_text(), \
        "cp dashboards/chatprovider-relay.json charts/chatprovider-operator/files/dashboards/"


@pytest.mark.parametrize(("values", "message"), [
    ({"quotas": {"redis": {"deploy": "yes"}}}, "/quotas/redis/deploy"),
    ({"quotas": {"redis": {"server": {"port": 0}}}}, "/quotas/redis/server/port"),
    ({"quotas": {"redis": {"server": {"maxMemory": "lots"}}}}, "/quotas/redis/server/maxMemory"),
    ({"quotas": {"redis": {"server": {"persistence": True}}}}, "persistence"),
    ({"grafana": {"dashboards": {"enabled": 1}}}, "/grafana/dashboards/enabled"),
])
def test_bad_quota_and_grafana_values_are_refused(helm, tmp_path, values, message) -> None:
    proc = helm("template", "x", str(CHART), "-f", str(write_values(tmp_path, values)),
                check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
