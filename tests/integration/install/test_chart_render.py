"""The chart renders, lints and is accepted by the real API server (server-side dry run) for the
default values and the combinations users pick; what it renders is restricted and narrow."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s_client

from chatprovider.api import crd

from .conftest import CHART, env_of, find, one, write_values

SERVICEMONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "names": {"kind": "ServiceMonitor", "listKind": "ServiceMonitorList",
                  "plural": "servicemonitors", "singular": "servicemonitor"},
        "scope": "Namespaced",
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
            "openAPIV3Schema": {"type": "object",
                                "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}

#: name -> values; "{ns}" in watchNamespaces becomes an existing namespace.
COMBINATIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "relay-embedded": {"relay": {"mode": "embedded"}, "operator": {"replicas": 1}},
    "relay-separate": {"relay": {"mode": "separate", "replicas": 3}},
    "relay-none": {"relay": {"mode": "none"}},
    "relay-auth-none": {"relay": {"auth": "none"}},
    "namespaced-rbac": {"rbac": {"namespaced": True, "resourceNames": ["llm-key"]},
                        "watchNamespaces": ["{ns}"], "relay": {"mode": "separate"}},
    "hpa-pdb": {"relay": {"mode": "separate", "autoscaling": {"enabled": True, "maxReplicas": 5},
                          "podDisruptionBudget": {"enabled": True}}},
    "networkpolicy": {"networkPolicy": {
        "enabled": True,
        "relayFrom": [{"namespaceSelector": {"matchLabels": {"relay-access": "true"}}}],
        "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}, {"to": [{"ipBlock": {
            "cidr": "10.0.0.0/8"}}]}]}, "relay": {"mode": "separate"}},
    "servicemonitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "no-crds-no-user-roles": {"crds": {"install": False}, "userRoles": {"create": False}},
    "crds-not-kept": {"crds": {"keep": False}},
}


def _values(name: str, namespace: str) -> dict[str, Any]:
    text = json.dumps(COMBINATIONS[name]).replace("{ns}", namespace)
    values: dict[str, Any] = json.loads(text)
    return values


@pytest.fixture(scope="module")
def servicemonitor_crd(kubectl) -> None:
    kubectl("apply", "--server-side", "--field-manager=chatprovider-tests", "-f", "-",
            input=yaml.safe_dump(SERVICEMONITOR_CRD))
    kubectl("wait", "--for=condition=Established", "--timeout=30s",
            "crd/servicemonitors.monitoring.coreos.com")


def test_helm_lint_is_clean(helm, tmp_path) -> None:
    out = helm("lint", "--strict", str(CHART)).stdout
    assert "0 chart(s) failed" in out
    for name in COMBINATIONS:
        values = write_values(tmp_path, _values(name, "team-a"))
        helm("lint", "--strict", str(CHART), "-f", str(values))


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_the_api_server_accepts_every_object(name, render, kubectl, k8s, chatprovider_crd,
                                             servicemonitor_crd, namespace) -> None:
    release_ns = f"cp-{uuid.uuid4().hex[:8]}"
    k8s_client.CoreV1Api(k8s).create_namespace({"metadata": {"name": release_ns}})
    objects = render(_values(name, namespace), release=f"r{uuid.uuid4().hex[:6]}",
                     namespace=release_ns)
    assert objects
    # Strict field validation: an unknown or misplaced field is an error, not a warning.
    proc = kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                   input=yaml.safe_dump_all(objects))
    assert "created (server dry run)" in proc.stdout or "configured" in proc.stdout


@pytest.mark.parametrize("name", ["default", "relay-embedded"])
def test_pods_pass_the_restricted_pod_security_standard(name, render, k8s, kubectl) -> None:
    """Each Deployment's pod, created (dry run) where Pod Security admission enforces
    `restricted`: the API server refuses a pod that is not."""
    ns = f"psa-{uuid.uuid4().hex[:8]}"
    k8s_client.CoreV1Api(k8s).create_namespace({"metadata": {"name": ns, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest"}}})
    deployments = find(render(_values(name, ns), namespace=ns), "Deployment")
    assert len(deployments) == (1 if name == "relay-embedded" else 2)
    for deployment in deployments:
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": deployment["metadata"]["name"], "namespace": ns},
               "spec": deployment["spec"]["template"]["spec"]}
        proc = kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod),
                       check=False)
        assert proc.returncode == 0, proc.stderr
        assert "Warning" not in proc.stderr, proc.stderr
    # and the check bites: the same pod as root is refused
    spec = deployments[0]["spec"]["template"]["spec"]
    rooted = {**spec, "securityContext": {**spec["securityContext"], "runAsUser": 0}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root", "namespace": ns},
           "spec": rooted}
    refused = kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod),
                      check=False)
    assert refused.returncode != 0 and "restricted" in refused.stderr


# --- what is rendered ----------------------------------------------------------------------------


def test_the_crds_are_the_generated_ones(render) -> None:
    objects = render()
    unkept = render({"crds": {"keep": False}})
    assert len(find(objects, "CustomResourceDefinition")) == len(crd.RESOURCES)
    for resource in crd.RESOURCES:
        generated = resource.build()
        rendered = one(objects, "CustomResourceDefinition", resource.crd_name)
        assert rendered["spec"] == generated["spec"]
        assert rendered["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert "annotations" not in one(unkept, "CustomResourceDefinition",
                                        resource.crd_name)["metadata"]
    assert not find(render({"crds": {"install": False}}), "CustomResourceDefinition")


def test_the_operator_runs_restricted_replicas_that_elect_a_leader(render) -> None:
    objects = render()
    deployment = one(objects, "Deployment", "cpo-chatprovider-operator")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pdb = one(objects, "PodDisruptionBudget", "cpo-chatprovider-operator")
    assert pdb["spec"]["maxUnavailable"] == 1
    pod = spec["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"}}
    [container] = pod["containers"]
    assert container["args"] == ["run"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
        "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "readinessProbe" not in container  # the relay is its own Deployment by default
    env = env_of(container)
    assert env["CHATPROVIDER_EGRESS_DENY"].split(",") == ["127.0.0.0/8", "::1/128"]
    assert env["CHATPROVIDER_RELAY"] == "false"
    assert env["CHATPROVIDER_LEADER_ELECTION"] == "true"
    assert env["CHATPROVIDER_LEASE_NAME"] == "chatprovider-operator"
    assert env["CHATPROVIDER_NAMESPACES"] == ","  # a lone comma: no namespace, all of them
    for name, path in (("POD_ID", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        item = next(e for e in container["env"] if e["name"] == name)
        assert item["valueFrom"] == {"fieldRef": {"fieldPath": path}}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    lease_role = one(objects, "Role", "cpo-chatprovider-operator-leader-election",
                     "chatprovider-system")
    assert _rules(lease_role) == {
        ("coordination.k8s.io", "leases", "create", ()),
        ("coordination.k8s.io", "leases", "get", ("chatprovider-operator",)),
        ("coordination.k8s.io", "leases", "update", ("chatprovider-operator",))}


def test_the_embedded_relay_runs_in_the_operator_pods(render) -> None:
    objects = render({"relay": {"mode": "embedded"}})
    [deployment] = find(objects, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 30
    env = env_of(container)
    assert env["CHATPROVIDER_RELAY"] == "true"
    assert env["CHATPROVIDER_RELAY_AUTH"] == "kubernetes"
    assert env["CHATPROVIDER_RELAY_TOKEN_AUDIENCE"] == "chatprovider-relay"


def test_every_setting_reaches_the_deployments_environment(render) -> None:
    """The chart's env is generated from the settings models: each command's pod gets a
    variable for every setting that has a chart value."""
    from chatprovider.cli.options import options

    objects = render()
    for deployment, command in (("cpo-chatprovider-operator", "run"),
                                ("cpo-chatprovider-operator-relay", "relay")):
        container = one(objects, "Deployment", deployment)["spec"]["template"]["spec"][
            "containers"][0]
        env = env_of(container)
        wanted = {o.envvar for o in options(command) if o.info.chart}
        assert wanted <= set(env), sorted(wanted - set(env))


def test_the_separate_relay_scales_and_the_operator_drops_its_relay(render) -> None:
    objects = render({"relay": {"mode": "separate", "replicas": 3}})
    operator = one(objects, "Deployment", "cpo-chatprovider-operator")
    relay = one(objects, "Deployment", "cpo-chatprovider-operator-relay")
    assert env_of(operator["spec"]["template"]["spec"]["containers"][0])[
        "CHATPROVIDER_RELAY"] == "false"
    assert relay["spec"]["replicas"] == 3
    assert relay["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    [container] = relay["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["relay"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    service = one(objects, "Service")
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "relay"
    assert relay["spec"]["template"]["spec"]["serviceAccountName"] == \
        "cpo-chatprovider-operator-relay"

    scaled = render({"relay": {"mode": "separate", "autoscaling": {"enabled": True},
                               "podDisruptionBudget": {"enabled": True}}})
    assert "replicas" not in one(scaled, "Deployment", "cpo-chatprovider-operator-relay")["spec"]
    hpa = one(scaled, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "cpo-chatprovider-operator-relay"
    assert one(scaled, "PodDisruptionBudget",
               "cpo-chatprovider-operator-relay")["spec"]["maxUnavailable"] == 1


def test_the_embedded_relay_service_selects_the_operator(render) -> None:
    service = one(render({"relay": {"mode": "embedded"}}), "Service")
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "operator"
    assert not find(render({"relay": {"mode": "none"}}), "Service")


def _rules(role: dict[str, Any]) -> set[tuple[str, str, str, tuple[str, ...]]]:
    return {(group, resource, verb, tuple(rule.get("resourceNames", ())))
            for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


CP = "ai.chatprovider.dev"
CRD_WATCH = {("apiextensions.k8s.io", "customresourcedefinitions", v, ()) for v in
             ("list", "watch")}
OBJECTS = {("", r, v, ()) for r in ("secrets", "configmaps") for v in ("get", "list", "watch")}
PROVIDERS = {(CP, "chatproviders", v, ()) for v in ("get", "list", "watch")}
PASSIVE_HEALTH = {(CP, "chatproviders", "patch", ())}  # the refresh annotation (docs/relay.md)
QUOTAS = {(CP, "chatquotas", v, ()) for v in ("get", "list", "watch")}
CHAT_MODELS = {(CP, "chatmodels", v, ()) for v in ("get", "list", "watch")}  # virtual models
CHAT_MODEL_STATUS = {(CP, "chatmodels/status", "patch", ())}


def test_operator_rbac_is_exactly_what_it_uses(render) -> None:
    objects = render({"relay": {"mode": "embedded"}})
    role = one(objects, "ClusterRole", "cpo-chatprovider-operator")
    assert _rules(role) == PROVIDERS | QUOTAS | OBJECTS | CRD_WATCH | PASSIVE_HEALTH | \
        CHAT_MODELS | CHAT_MODEL_STATUS | {
            (CP, "chatproviders/status", "patch", ()), (CP, "chatquotas/status", "patch", ()),
            ("", "events", "create", ())}
    separate = one(render({"relay": {"mode": "separate"}}), "ClusterRole",
                   "cpo-chatprovider-operator")
    assert (CP, "chatproviders", "patch", ()) not in _rules(separate)  # its relay patches
    delegator = one(objects, "ClusterRoleBinding", "cpo-chatprovider-operator-auth-delegator")
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    assert delegator["subjects"] == [{"kind": "ServiceAccount", "name":
                                      "cpo-chatprovider-operator",
                                      "namespace": "chatprovider-system"}]
    # no relay, or no kubernetes auth: no review permissions
    for values in ({"relay": {"mode": "none"}}, {"relay": {"auth": "none"}}, {}):
        names = {b["metadata"]["name"] for b in find(render(values), "ClusterRoleBinding")}
        assert "cpo-chatprovider-operator-auth-delegator" not in names, values


def test_relay_rbac_reads_and_asks_for_rechecks(render) -> None:
    objects = render({"relay": {"mode": "separate"}})
    role = one(objects, "ClusterRole", "cpo-chatprovider-operator-relay")
    assert _rules(role) == PROVIDERS | QUOTAS | OBJECTS | CRD_WATCH | PASSIVE_HEALTH | \
        CHAT_MODELS | {
        ("", "events", "create", ())}
    one(objects, "ClusterRoleBinding", "cpo-chatprovider-operator-relay-auth-delegator")


@pytest.mark.parametrize(("mode", "account"), [("separate", "cpo-chatprovider-operator-relay"),
                                               ("embedded", "cpo-chatprovider-operator")])
def test_the_account_that_runs_the_relay_may_change_only_the_refresh_annotation(
        render, mode, account) -> None:
    objects = render({"relay": {"mode": mode}})
    policy = one(objects, "ValidatingAdmissionPolicy", "cpo-chatprovider-operator-relay-patches")
    condition = policy["spec"]["matchConditions"][0]["expression"]
    assert f"'system:serviceaccount:chatprovider-system:{account}'" in condition
    assert policy["spec"]["variables"][0]["expression"] == "'ai.chatprovider.dev/refresh'"
    binding = one(objects, "ValidatingAdmissionPolicyBinding",
                  "cpo-chatprovider-operator-relay-patches")
    assert binding["spec"]["validationActions"] == ["Deny"]
    names = {p["metadata"]["name"] for p in find(render({"relay": {"mode": "none"}}),
                                                 "ValidatingAdmissionPolicy")}
    assert "cpo-chatprovider-operator-relay-patches" not in names


def test_namespaced_rbac_grants_nothing_cluster_wide_but_discovery_and_reviews(render) -> None:
    objects = render({"rbac": {"namespaced": True, "resourceNames": ["llm-key"]},
                      "watchNamespaces": ["team-a", "team-b"], "relay": {"mode": "separate"}})
    cluster_roles = [r for r in find(objects, "ClusterRole")
                     if r["metadata"]["name"].startswith("cpo-")]
    assert {r["metadata"]["name"] for r in cluster_roles} == {
        "cpo-chatprovider-operator-discovery", "cpo-chatprovider-operator-relay-discovery"}
    namespaces = {("", "namespaces", v, ()) for v in ("list", "watch")}
    assert all(_rules(r) == CRD_WATCH | namespaces for r in cluster_roles)
    for ns in ("team-a", "team-b"):
        role = one(objects, "Role", "cpo-chatprovider-operator", ns)
        named = {("", r, v, ("llm-key",)) for r in ("secrets", "configmaps")
                 for v in ("get", "list", "watch")}
        assert _rules(role) == PROVIDERS | QUOTAS | named | CHAT_MODELS | CHAT_MODEL_STATUS | {
            (CP, "chatproviders/status", "patch", ()), (CP, "chatquotas/status", "patch", ()),
            ("", "events", "create", ())}
        binding = one(objects, "RoleBinding", "cpo-chatprovider-operator", ns)
        assert binding["subjects"][0]["namespace"] == "chatprovider-system"
        one(objects, "Role", "cpo-chatprovider-operator-relay", ns)
    operator = one(objects, "Deployment", "cpo-chatprovider-operator")
    assert env_of(operator["spec"]["template"]["spec"]["containers"][0])[
        "CHATPROVIDER_NAMESPACES"] == "team-a,team-b"


def test_user_roles_aggregate_use_into_edit_not_view(render) -> None:
    objects = render()
    labels = {r["metadata"]["name"]: {k.rsplit("-", 1)[-1] for k, v in
                                      r["metadata"]["labels"].items()
                                      if k.startswith("rbac.authorization.k8s.io/aggregate-to")}
              for r in find(objects, "ClusterRole")}
    assert labels["chatprovider-viewer"] == {"view", "edit", "admin"}
    assert labels["chatprovider-editor"] == {"edit", "admin"}
    assert labels["chatprovider-user"] == {"edit", "admin"}
    assert _rules(one(objects, "ClusterRole", "chatprovider-user")) == {
        (CP, "chatproviders", "use", ()), (CP, "chatmodels", "use", ())}
    assert not find(render({"userRoles": {"create": False}}), "ClusterRole", "chatprovider-user")


def test_network_policy_opens_only_the_relay_port(render) -> None:
    objects = render(_values("networkpolicy", "x"))
    operator = one(objects, "NetworkPolicy", "cpo-chatprovider-operator")
    assert operator["spec"]["ingress"] == []
    relay = one(objects, "NetworkPolicy", "cpo-chatprovider-operator-relay")
    [rule] = relay["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"relay-access": "true"}}}]
    assert relay["spec"]["policyTypes"] == ["Ingress", "Egress"]
    default = one(render({"networkPolicy": {"enabled": True}}), "NetworkPolicy",
                  "cpo-chatprovider-operator-relay")
    assert default["spec"]["policyTypes"] == ["Ingress"]  # egress unrestricted unless given
    assert "from" not in default["spec"]["ingress"][0]


def test_service_monitor_scrapes_the_relay(render) -> None:
    monitor = one(render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "relay"


@pytest.mark.parametrize(("values", "message"), [
    ({"relay": {"mode": "sidecar"}}, "/relay/mode"),
    ({"relay": {"auth": "basic"}}, "/relay/auth"),
    ({"egress": {"deny": ["localhost"]}}, "/egress/deny/0"),
    ({"operator": {"replicas": 0}}, "/operator/replicas"),
    ({"typo": True}, "typo"),
    ({"image": {"digest": "latest"}}, "/image/digest"),
    ({"rbac": {"namespaced": True}}, "needs watchNamespaces"),
    ({"serviceMonitor": {"enabled": True}, "relay": {"mode": "none"}}, "needs a relay"),
])
def test_bad_values_are_refused_before_rendering(helm, tmp_path, values, message) -> None:
    proc = helm("template", "x", str(CHART), "-f", str(write_values(tmp_path, values)),
                check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


def _key_lines(lines: list[str]) -> dict[str, int]:
    """Dotted path of every mapping key in values.yaml -> its line index."""
    found: dict[str, int] = {}
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][A-Za-z0-9]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        found.setdefault(".".join(k for _, k in stack), i)
    return found


def test_every_value_is_commented_and_typed() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    schema = json.loads((CHART / "values.schema.json").read_text())
    positions = _key_lines(lines)

    def commented(dotted: str) -> bool:
        return lines[positions[dotted] - 1].strip().startswith("#")

    def walk(values: dict[str, Any], node: dict[str, Any], path: str, documented: bool) -> None:
        assert node.get("additionalProperties") is False, f"{path or '<root>'} is open"
        for key, value in values.items():
            dotted = f"{path}.{key}".lstrip(".")
            assert key in node["properties"], f"{dotted} is not in values.schema.json"
            child = node["properties"][key]
            assert child.get("description"), f"{dotted} has no description in the schema"
            if isinstance(value, dict) and child.get("additionalProperties") is False:
                # a section: commented as a whole, or key by key
                walk(value, child, dotted, documented or commented(dotted))
                continue
            assert documented or commented(dotted), f"values.yaml: {dotted} is not commented"

    walk(yaml.safe_load("\n".join(lines)), schema, "", False)
