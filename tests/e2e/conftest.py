"""The e2e tier: the image and the chart on a real node (chatprovider_tools.node): a kubelet
on containerd and runc, a CNI bridge, kube-proxy and CoreDNS, built from package registries by
``scripts/install-node.sh`` (``make setup``). A missing piece fails the tests; it never skips.

Pods reach only each other, the node's address and Services; a test talks to them from the host
through ClusterIPs (kube-proxy's rules) or from pods it starts.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from chatprovider_tools import llamaserver
from chatprovider_tools.node import NodeCluster, NodeError
from tests.conftest import RELAY_AUDIENCE, ROOT, HelmRunner

#: The image `make setup` builds from this tree (scripts/build-image.sh).
IMAGE = "chatprovider-operator:dev"
#: The tests' workloads, not the product (scripts/node/e2e.Dockerfile, built by
#: scripts/install-node.sh): llama.cpp's llama-server with Gemma 3 270M, curl, the openai SDK.
WORKLOADS_IMAGE = "chatprovider-e2e:dev"
#: Where the chart (release chatprovider-operator) and manifests/ install the product.
NAMESPACE = "chatprovider-system"
RELEASE = "chatprovider-operator"
RELAY_DNS = f"http://chatprovider-operator-relay.{NAMESPACE}:8080"
#: The team whose provider the tests call: its server is a pod in the team's namespace.
TEAM = "team-a"
MODEL = f"{TEAM}/vllm/llama3"
#: The team's second provider: llama-server with a real model, as a pod.
GEMMA = f"{TEAM}/gemma/{llamaserver.MODEL_ALIAS}"
#: The team's upstreams: provider name -> (endpoint, serverType).
SERVERS = {"vllm": (f"http://upstream.{TEAM}:8000/v1", "vllm"),
           "gemma": (f"http://gemma.{TEAM}:8080/v1", "llamacpp")}
DEVSERVER = ROOT / "tools" / "chatprovider_tools"
#: A pod's securityContext under the restricted Pod Security Standard.
RESTRICTED = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True}


@pytest.fixture(scope="package")
def node() -> Iterator[NodeCluster]:
    try:
        cluster = NodeCluster()
        cluster.start()
    except NodeError as exc:
        pytest.fail(str(exc), pytrace=False)
    print(f"\nnode Ready in {cluster.startup_seconds:.1f}s")
    try:
        yield cluster
    finally:
        began = time.monotonic()
        cluster.stop()
        print(f"\nnode stopped in {time.monotonic() - began:.1f}s")
    # the machine is as it was: no process, mount, link, chain or file of the node is left
    assert cluster.leftovers() == []


def _load(node: NodeCluster, image: str) -> str:
    began = time.monotonic()
    try:
        name = node.load_image(image)
    except NodeError as exc:
        pytest.fail(str(exc), pytrace=False)
    print(f"\n{image} loaded into the node in {time.monotonic() - began:.1f}s")
    return name


@pytest.fixture(scope="package")
def image(node: NodeCluster) -> str:
    """The project's image, in the node's containerd (pods use it with pullPolicy Never)."""
    return _load(node, IMAGE)


@pytest.fixture(scope="package")
def workloads(node: NodeCluster) -> str:
    """The tests' workloads image, in the node's containerd."""
    return _load(node, WORKLOADS_IMAGE)


@dataclass(frozen=True)
class Team:
    """Namespace ``team-a`` (restricted): two upstream pods, the project's dev server and
    llama-server with Gemma (the providers ``vllm`` and ``gemma`` once registered), the
    ServiceAccount ``app`` bound to ``chatprovider-user`` (verb ``use``) and ``stranger``, bound
    to nothing."""

    node: NodeCluster
    image: str
    workloads: str

    def token(self, service_account: str) -> str:
        return self.node.kubectl("create", "token", service_account, "-n", TEAM,
                                 "--audience", RELAY_AUDIENCE).stdout.strip()

    def register(self, name: str = "vllm", server: str = "vllm") -> None:
        """Apply the provider ``name`` on the upstream ``server`` (a key of :data:`SERVERS`),
        once the CRDs are installed."""
        endpoint, server_type = SERVERS[server]
        apply(self.node, {
            "apiVersion": "ai.chatprovider.dev/v1alpha1", "kind": "ChatProvider",
            "metadata": {"name": name, "namespace": TEAM},
            "spec": {"endpoint": endpoint, "serverType": server_type,
                     "apiKeySecretRef": {"name": "llm-key", "key": "apiKey"},
                     "discovery": {"enabled": True, "interval": "1m"}}})

    def provider_ready(self, name: str = "vllm") -> bool:
        provider = self.node.kubectl_json("get", "chatprovider", name, "-n", TEAM)
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in provider.get("status", {}).get("conditions", []))

    def call_relay(self, pod: str, service_account: str) -> Any:
        """From a pod of the team, as ``service_account`` with a projected token: what
        ``GET /v1/models``, a chat and a stream answered, as ``{"models": [status, body],
        ...}``."""
        return self._run(pod, service_account, self.image, ["/opt/chatprovider/bin/python",
                                                             "-c", CLIENT % (RELAY_DNS, MODEL)])

    def call_gemma_with_sdk_and_curl(self, pod: str, service_account: str) -> Any:
        """From a pod of the team running the openai SDK and curl (the workloads image), the
        real model through the relay's DNS name: what :data:`SDK_CLIENT` printed."""
        return self._run(pod, service_account, self.workloads,
                         ["/opt/client/bin/python", "-c", SDK_CLIENT % (RELAY_DNS, GEMMA)])

    def _run(self, pod: str, service_account: str, image: str, command: list[str]) -> Any:
        self.node.kubectl("delete", "pod", pod, "-n", TEAM, "--ignore-not-found")
        apply(self.node, client_pod(image, TEAM, pod, service_account, command,
                                    RELAY_AUDIENCE))
        return pod_output(self.node, TEAM, pod)


@pytest.fixture(scope="package")
def team(node: NodeCluster, image: str, workloads: str) -> Team:
    restricted_namespace(node, TEAM)
    node.kubectl("create", "secret", "generic", "llm-key", "-n", TEAM,
                 "--from-literal=apiKey=e2e-upstream-key")
    apply(node, *devserver_objects(image, TEAM, "llm-key"),
          *llama_server_objects(workloads, TEAM, "llm-key"))
    for name in ("app", "stranger"):
        node.kubectl("create", "serviceaccount", name, "-n", TEAM)
    node.kubectl("create", "rolebinding", "app-uses-providers", "-n", TEAM,
                 "--clusterrole=chatprovider-user", f"--serviceaccount={TEAM}:app")
    return Team(node, image, workloads)


#: Run first by the client pods: wait (60 s at most) until the relay's Service takes a TCP
#: connection. A Service whose pods just became ready can still be refused for a moment, until
#: kube-proxy has programmed its endpoints ("No route to host": CI saw it once, right after
#: the plain manifests' rollout); what the tests assert starts once it answers.
REACHABLE = textwrap.dedent("""
    import socket, time, urllib.parse
    def wait_reachable(base):
        url = urllib.parse.urlsplit(base)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection((url.hostname, url.port or 80), timeout=5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
""")

#: What a client pod runs: models, a chat and a stream through the relay, with the token file
#: read for each request (it rotates); prints one JSON line.
CLIENT = REACHABLE + textwrap.dedent("""
    import json, urllib.error, urllib.request
    BASE = "%s"
    wait_reachable(BASE)
    def call(path, body=None):
        token = open("/var/run/secrets/relay/token").read().strip()
        request = urllib.request.Request(
            BASE + path, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
    status, models = call("/v1/models")
    chat = {"model": "%s", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}
    chat_status, answer = call("/v1/chat/completions", chat)
    stream_status, stream = call("/v1/chat/completions", {**chat, "stream": True})
    print(json.dumps({"models": [status, models], "chat": [chat_status, answer],
                      "stream": [stream_status, stream]}))
""")


#: What an app pod with the openai SDK and curl runs against the real model: models, a chat and
#: a stream with the SDK (its api_key a callable that reads the rotating token file), a chat
#: with curl; prints one JSON line. (A base model's words are not asserted, only that it
#: generated them: finish reasons and usage.)
SDK_CLIENT = REACHABLE + textwrap.dedent("""
    import json, subprocess, openai
    BASE, MODEL = "%s", "%s"
    wait_reachable(BASE)
    def token():
        return open("/var/run/secrets/relay/token").read().strip()
    client = openai.OpenAI(base_url=BASE + "/v1", api_key=token, max_retries=0, timeout=120)
    hello = [{"role": "user", "content": "Say hello."}]
    models = sorted(m.id for m in client.models.list())
    chat = client.chat.completions.create(model=MODEL, max_tokens=8, messages=hello,
                                          temperature=0)
    chunks = list(client.chat.completions.create(
        model=MODEL, max_tokens=8, messages=hello, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    curl = subprocess.run(
        ["curl", "-sS", "-m", "120", "-w", "\\n%%{http_code}", BASE + "/v1/chat/completions",
         "-H", "Authorization: Bearer " + token(), "-H", "Content-Type: application/json",
         "-d", json.dumps({"model": MODEL, "max_tokens": 4, "messages": hello})],
        capture_output=True, text=True)
    body, _, code = curl.stdout.rpartition("\\n")
    print(json.dumps({
        "models": models, "chat_model": chat.model, "chat_tokens": chat.usage.completion_tokens,
        "chat_finish": chat.choices[0].finish_reason,
        "streamed": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
        "stream_finish": [c.choices[0].finish_reason for c in chunks
                          if c.choices and c.choices[0].finish_reason],
        "stream_tokens": [c.usage.completion_tokens for c in chunks if c.usage],
        "curl": [code, body, curl.stderr]}))
""")


def assert_served(seen: Any) -> None:
    """What :meth:`Team.call_relay` saw, for a caller allowed to use the provider."""
    status, models = seen["models"]
    assert status == 200 and MODEL in {m["id"] for m in json.loads(models)["data"]}, models
    status, answer = seen["chat"]
    assert status == 200, answer
    assert json.loads(answer)["choices"][0]["message"]["content"]
    status, stream = seen["stream"]
    assert status == 200 and stream.rstrip().endswith("data: [DONE]"), stream


def pods_report(node: NodeCluster, namespace: str) -> str:
    """Each pod's phase and container states, and the last lines of its logs: what a failed
    wait shows (a crash loop, an image that does not start, a probe that fails)."""
    lines = []
    for pod in node.kubectl_json("get", "pods", "-n", namespace)["items"]:
        name = pod["metadata"]["name"]
        states = [(c["name"], c.get("restartCount"), c.get("state"), c.get("lastState"))
                  for c in pod.get("status", {}).get("containerStatuses", [])]
        logs = node.kubectl("logs", name, "-n", namespace, "--tail=8", "--all-containers",
                            check=False)
        lines.append(f"--- pod {name}: {pod['status'].get('phase')} {states}\n"
                     f"{logs.stdout}{logs.stderr}")
    events = node.kubectl("get", "events", "-n", namespace, "--field-selector=type=Warning",
                          check=False).stdout
    return "\n".join(lines) + f"\n--- warnings\n{events}"


def report(node: NodeCluster, namespace: str = NAMESPACE) -> Callable[[], str]:
    """:func:`pods_report` of ``namespace``, for a wait's ``why``."""
    return lambda: pods_report(node, namespace)


def probe_results(node: NodeCluster, namespace: str) -> dict[tuple[str, str], dict[str, int]]:
    """The kubelet's own count of probe results (its /metrics/probes, through the API
    server): ``{(pod, "Liveness"): {"successful": 3, "failed": 0}, ...}``."""
    text = node.kubectl("get", "--raw",
                        "/api/v1/nodes/node1/proxy/metrics/probes").stdout
    results: dict[tuple[str, str], dict[str, int]] = {}
    for line in text.splitlines():
        if not line.startswith("prober_probe_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[:line.rindex("}")]))
        if labels.get("namespace") == namespace:
            counts = results.setdefault((labels["pod"], labels["probe_type"]), {})
            counts[labels["result"]] = int(float(line.rsplit(" ", 1)[1]))
    return results


def relay_ip(node: NodeCluster) -> str:
    service = node.kubectl_json("get", "svc", "chatprovider-operator-relay", "-n", NAMESPACE)
    return str(service["spec"]["clusterIP"])


def apply(node: NodeCluster, *objects: dict[str, Any]) -> None:
    node.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 120,
               interval: float = 0.5, why: Callable[[], str] | None = None) -> Any:
    """Poll ``predicate`` until it is truthy; on timeout, fail with ``why()`` (what explains
    it: pods, logs)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    detail = f"\n{why()}" if why is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}{detail}")


def restricted_namespace(node: NodeCluster, name: str) -> None:
    """A namespace whose pods must meet the restricted Pod Security Standard."""
    apply(node, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {
        f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}}})


def devserver_objects(image: str, namespace: str, api_key_secret: str) -> list[dict[str, Any]]:
    """The project's dev server as a pod and a Service ``upstream:8000``: the image's Python
    running the workshop's devserver package from a ConfigMap (the image ships no workshop)."""
    files = {"__init__.py": DEVSERVER / "__init__.py",
             **{f"devserver/{p.name}": p for p in sorted((DEVSERVER / "devserver").glob("*.py"))}}
    keys = {path.replace("/", "__"): path for path in files}
    labels = {"app": "upstream"}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "devserver",
                                                              "namespace": namespace},
         "data": {key: files[path].read_text() for key, path in keys.items()}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "upstream", "namespace": namespace, "labels": labels},
         "spec": {
             "securityContext": RESTRICTED, "automountServiceAccountToken": False,
             "containers": [{
                 "name": "devserver", "image": image, "imagePullPolicy": "Never",
                 "command": ["/opt/chatprovider/bin/python", "-m",
                             "chatprovider_tools.devserver", "--host", "0.0.0.0",
                             "--port", "8000", "--flavour", "vllm", "--models", "llama3"],
                 "args": ["--api-key", "$(API_KEY)"],
                 "env": [{"name": "PYTHONPATH", "value": "/workshop"},
                         {"name": "API_KEY", "valueFrom": {"secretKeyRef": {
                             "name": api_key_secret, "key": "apiKey"}}}],
                 "ports": [{"containerPort": 8000}],
                 "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
                 "securityContext": CONTAINER_RESTRICTED,
                 "volumeMounts": [{"name": "workshop", "mountPath": "/workshop/chatprovider_tools",
                                   "readOnly": True}],
             }],
             "volumes": [{"name": "workshop", "configMap": {
                 "name": "devserver",
                 "items": [{"key": key, "path": path} for key, path in keys.items()]}}],
         }},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "upstream", "namespace": namespace},
         "spec": {"selector": labels, "ports": [{"port": 8000, "targetPort": 8000}]}},
    ]


def llama_server_objects(image: str, namespace: str,
                         api_key_secret: str) -> list[dict[str, Any]]:
    """llama.cpp's llama-server with Gemma 3 270M (the workloads image) as a pod and a Service
    ``gemma:8080``, behind the key in ``api_key_secret``, started as the tests start it on the
    host (:func:`chatprovider_tools.llamaserver.server_argv`)."""
    root = Path("/opt/llama")
    labels = {"app": "gemma"}
    return [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "gemma", "namespace": namespace, "labels": labels},
         "spec": {
             "securityContext": RESTRICTED, "automountServiceAccountToken": False,
             "containers": [{
                 "name": "llama-server", "image": image, "imagePullPolicy": "Never",
                 "command": llamaserver.server_argv(8080, "$(API_KEY)", root=root,
                                                    host="0.0.0.0",
                                                    template=root / "gemma.jinja"),
                 "env": [{"name": "API_KEY", "valueFrom": {"secretKeyRef": {
                     "name": api_key_secret, "key": "apiKey"}}}],
                 "ports": [{"containerPort": 8080}],
                 # /health answers 503 until the model is loaded, and needs no key
                 "readinessProbe": {"httpGet": {"path": "/health", "port": 8080},
                                    "periodSeconds": 1},
                 "securityContext": CONTAINER_RESTRICTED,
                 "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
             }],
             "volumes": [{"name": "tmp", "emptyDir": {}}],
         }},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "gemma", "namespace": namespace},
         "spec": {"selector": labels, "ports": [{"port": 8080, "targetPort": 8080}]}},
    ]


def client_pod(image: str, namespace: str, name: str, service_account: str,
               command: list[str], audience: str) -> dict[str, Any]:
    """A pod that runs ``command``, holding a projected ServiceAccount token for ``audience``
    at /var/run/secrets/relay/token."""
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "serviceAccountName": service_account, "restartPolicy": "Never",
            "automountServiceAccountToken": False, "securityContext": RESTRICTED,
            "containers": [{
                "name": "client", "image": image, "imagePullPolicy": "Never",
                "command": command,
                "securityContext": CONTAINER_RESTRICTED,
                "volumeMounts": [{"name": "relay", "mountPath": "/var/run/secrets/relay"}],
            }],
            "volumes": [{"name": "relay", "projected": {"sources": [{"serviceAccountToken": {
                "audience": audience, "expirationSeconds": 3600, "path": "token"}}]}}],
        },
    }


def pod_output(node: NodeCluster, namespace: str, name: str, timeout: float = 120) -> Any:
    """Wait for a client pod to end; what it printed as JSON (its last line)."""
    def phase() -> str | None:
        status = node.kubectl_json("get", "pod", name, "-n", namespace).get("status", {})
        return status.get("phase") if status.get("phase") in ("Succeeded", "Failed") else None

    ended = wait_until(phase, f"pod {namespace}/{name} to end", timeout,
                       why=report(node, namespace))
    logs = node.kubectl("logs", name, "-n", namespace).stdout
    assert ended == "Succeeded", f"pod {name} {ended}:\n{logs}"
    return json.loads(logs.strip().splitlines()[-1])


def rollout(node: NodeCluster, namespace: str, timeout: float = 240) -> None:
    for deployment in node.kubectl("get", "deploy", "-n", namespace, "-o",
                                   "name").stdout.split():
        node.kubectl("rollout", "status", deployment, "-n", namespace, f"--timeout={timeout}s",
                     timeout=timeout + 10)


def helm_install_args(image: str, release: str, namespace: str, *sets: str) -> list[str]:
    repository, tag = image.rsplit(":", 1)
    return [release, str(ROOT / "charts" / "chatprovider-operator"), "-n", namespace,
            "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", "image.pullPolicy=Never", *(a for s in sets for a in ("--set", s))]




def helm_install(helm: HelmRunner, node: NodeCluster, image: str, *sets: str) -> str:
    """``helm install --wait`` of the chart (release :data:`RELEASE`, ``--set`` each of
    ``sets``) into :data:`NAMESPACE`, which enforces restricted; fails with the pods' report
    when the rollout does not finish in 150 s. What helm printed."""
    restricted_namespace(node, NAMESPACE)
    installed = helm("install", *helm_install_args(image, RELEASE, NAMESPACE, *sets), "--wait",
                     "--timeout", "150s", kubeconfig=node.kubeconfig, timeout=180, check=False)
    assert installed.returncode == 0, (f"helm install: {installed.stderr}\n"
                                       + pods_report(node, NAMESPACE))
    return installed.stdout + installed.stderr


def helm_uninstall(helm: HelmRunner, node: NodeCluster, check: bool = True) -> None:
    helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s",
         kubeconfig=node.kubeconfig, check=check, timeout=150)
