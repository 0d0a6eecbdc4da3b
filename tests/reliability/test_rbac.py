"""RBAC against the real API server: what the chart's ServiceAccounts may and may not do
(``helm template`` of charts/chatprovider-operator, relay.mode=separate), and who the relay lets
through (no token, a forged token, another namespace's account, an allowed and a denied one)."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
from kubernetes import client as k8s_client

from chatprovider_tools.devserver import DevServer
from tests.conftest import RELAY_AUDIENCE
from tests.integration.controller.conftest import Providers

from .conftest import RELEASE_NS
from .harness import ChatproviderProcess, wait_for
from .test_secrets import _force_ready

MSG = [{"role": "user", "content": "hi"}]


def can(api, user: str, verb: str, resource: str, *, group: str = "",
        namespace: str | None = None, subresource: str = "", name: str = "",
        groups: tuple[str, ...] = ()) -> bool:
    attrs = {"verb": verb, "resource": resource, "group": group, "subresource": subresource,
             "name": name}
    if namespace:
        attrs["namespace"] = namespace
    review = k8s_client.AuthorizationV1Api(api).create_subject_access_review({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": list(groups), "resourceAttributes": attrs}})
    return bool(review.status.allowed)


CP = "ai.chatprovider.dev"
#: (component, verb, resource, group, subresource, namespaced, expected)
MATRIX = [
    ("operator", "list", "chatproviders", CP, "", False, True),
    ("operator", "watch", "chatproviders", CP, "", False, True),
    ("operator", "patch", "chatproviders", CP, "status", True, True),
    ("operator", "create", "events", "", "", True, True),
    ("operator", "get", "secrets", "", "", True, True),
    ("operator", "watch", "secrets", "", "", True, True),
    ("operator", "list", "customresourcedefinitions", "apiextensions.k8s.io", "", False, True),
    ("operator", "update", "chatproviders", CP, "", True, False),
    ("operator", "patch", "chatproviders", CP, "", True, False),
    ("operator", "delete", "chatproviders", CP, "", True, False),
    ("operator", "use", "chatproviders", CP, "", True, False),
    ("operator", "create", "secrets", "", "", True, False),
    ("operator", "update", "secrets", "", "", True, False),
    ("operator", "list", "pods", "", "", True, False),
    ("operator", "create", "tokenreviews", "authentication.k8s.io", "", False, False),
    ("operator", "update", "customresourcedefinitions", "apiextensions.k8s.io", "", False,
     False),
    ("relay", "list", "chatproviders", CP, "", False, True),
    ("relay", "get", "secrets", "", "", True, True),
    ("relay", "create", "tokenreviews", "authentication.k8s.io", "", False, True),
    ("relay", "create", "subjectaccessreviews", "authorization.k8s.io", "", False, True),
    ("relay", "patch", "chatproviders", CP, "status", True, False),
    # passive health: the refresh annotation (the admission policy allows nothing else), Events
    ("relay", "patch", "chatproviders", CP, "", True, True),
    ("relay", "create", "events", "", "", True, True),
    ("relay", "update", "chatproviders", CP, "", True, False),
    ("relay", "create", "secrets", "", "", True, False),
    ("relay", "use", "chatproviders", CP, "", True, False),
    ("relay", "delete", "chatproviders", CP, "", True, False),
    # virtual models: both read ChatModels, only the operator writes their status
    ("operator", "watch", "chatmodels", CP, "", False, True),
    ("operator", "patch", "chatmodels", CP, "status", True, True),
    ("operator", "update", "chatmodels", CP, "", True, False),
    ("operator", "use", "chatmodels", CP, "", True, False),
    ("relay", "list", "chatmodels", CP, "", False, True),
    ("relay", "watch", "chatmodels", CP, "", False, True),
    ("relay", "patch", "chatmodels", CP, "status", True, False),
    ("relay", "use", "chatmodels", CP, "", True, False),
]


def test_service_account_permission_matrix(secured_cluster, figure) -> None:
    api = secured_cluster.api
    wrong = []
    for component, verb, resource, group, sub, namespaced, expected in MATRIX:
        user = secured_cluster.users[component]
        got = can(api, user, verb, resource, group=group, subresource=sub,
                  namespace="team-x" if namespaced else None,
                  groups=("system:serviceaccounts", f"system:serviceaccounts:{RELEASE_NS}"))
        if got != expected:
            wrong.append((component, verb, resource, sub, got))
    assert not wrong, wrong
    allowed = sum(1 for row in MATRIX if row[-1])
    figure("RBAC of the chart's ServiceAccounts (SubjectAccessReview, real API server)",
           f"{len(MATRIX)} checks as expected: {allowed} allowed, {len(MATRIX) - allowed} "
           "denied (no spec writes, no Secret writes, no pods, no 'use', reviews and the refresh "
           "annotation only for the relay)")


def _forged_token() -> str:
    def b64(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    claims = {"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:x:admin",
              "aud": ["https://kubernetes.default.svc"], "exp": 4102444800}
    return f"{b64({'alg': 'RS256', 'kid': 'forged'})}.{b64(claims)}.{'A' * 342}"


def test_relay_authorization_matrix(secured_cluster, tmp_path, figure) -> None:
    api = secured_cluster.api
    core = k8s_client.CoreV1Api(api)
    rbac = k8s_client.RbacAuthorizationV1Api(api)
    suffix = uuid.uuid4().hex[:8]
    team, elsewhere = f"rteam-{suffix}", f"relse-{suffix}"
    for ns in (team, elsewhere):
        core.create_namespace({"metadata": {"name": ns}})
    for ns, sa in ((team, "app"), (team, "stranger"), (elsewhere, "app")):
        core.create_namespaced_service_account(ns, {"metadata": {"name": sa}})
    rbac.create_namespaced_role_binding(team, {  # the chart's user role, bound to team/app
        "metadata": {"name": "app-uses-providers"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "chatprovider-user"},
        "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": team}]})

    def token(ns: str, sa: str, audiences: tuple[str, ...] = (RELAY_AUDIENCE,)) -> str:
        spec = {"expirationSeconds": 3600, "audiences": list(audiences)} if audiences else {
            "expirationSeconds": 3600}
        return str(core.create_namespaced_service_account_token(sa, ns, {"spec": spec})
                   .status.token)

    callers = {
        "no token": None,
        "not a bearer token": "Basic dXNlcjpwYXNz",
        "forged token": f"Bearer {_forged_token()}",
        "other namespace's SA, no binding": f"Bearer {token(elsewhere, 'app')}",
        "denied SA (same namespace, no binding)": f"Bearer {token(team, 'stranger')}",
        "allowed SA, token for the API server": f"Bearer {token(team, 'app', ())}",
        "allowed SA, token for another audience": f"Bearer {token(team, 'app', ('vault',))}",
        "allowed SA": f"Bearer {token(team, 'app')}",
    }
    expected = {  # (GET /v1/models count, bare id, qualified id)
        "no token": (401, 401, 401),
        "not a bearer token": (401, 401, 401),
        "forged token": (401, 401, 401),
        "other namespace's SA, no binding": (0, 404, 403),
        "denied SA (same namespace, no binding)": (0, 404, 403),
        "allowed SA, token for the API server": (401, 401, 401),
        "allowed SA, token for another audience": (401, 401, 401),
        "allowed SA": (1, 200, 200),
    }
    providers = Providers(api, team)
    relay = ChatproviderProcess(secured_cluster.kubeconfigs["relay"], tmp_path / "relay.log",
                                command="relay", relay_auth="kubernetes")
    observed: dict[str, tuple] = {}
    try:
        with DevServer("generic", models=["m"]) as up:
            providers.create("p", {"endpoint": up.base_url})
            _force_ready(providers, "p")
            relay.start()
            ok = callers["allowed SA"]
            wait_for(lambda: httpx.get(f"{relay.url}/v1/models", headers={
                "Authorization": ok}).json().get("data"), timeout=20, what="the relay lists p")
            for who, auth in callers.items():
                headers = {"Authorization": auth} if auth else {}
                models = httpx.get(f"{relay.url}/v1/models", headers=headers)
                count = len(models.json()["data"]) if models.status_code == 200 \
                    else models.status_code
                bare = httpx.post(f"{relay.url}/v1/chat/completions", headers=headers,
                                  json={"model": "m", "messages": MSG}).status_code
                pinned = httpx.post(f"{relay.url}/v1/chat/completions", headers=headers,
                                    json={"model": f"{team}/p/m", "messages": MSG}).status_code
                observed[who] = (count, bare, pinned)
            served = up.journal.total
    finally:
        relay.stop()
    assert observed == expected, observed
    assert served == 2  # only the allowed caller's two chats reached the upstream
    figure("relay authorization matrix (relay as the chart's relay ServiceAccount)",
           "; ".join(f"{who}: models={m} bare={b} pinned={p}"
                     for who, (m, b, p) in observed.items()))
