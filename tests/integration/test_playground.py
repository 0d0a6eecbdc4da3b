"""The browser playground: served by the relay when ``RelaySettings.playground`` is on.

Two stacks (the real operator with its embedded relay, against the real API server, with
DevServer upstreams): one without authentication (``chatprovider up --relay-auth none``) and
one with Kubernetes tokens and RBAC (as ``chatprovider up`` runs it). The browser tests drive
headless Chromium with Playwright (the system's ``/usr/bin/chromium``, installed by
``scripts/install-browser.sh``; a missing browser is a failure, never a skip).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s_client
from tests.conftest import RELAY_AUDIENCE
from tests.integration.operator_stack import OperatorStack

from chatprovider.registry import Registry
from chatprovider.relay import AuthMode, Relay, RelaySettings
from chatprovider.relay.playground.assets import CSP, FILES
from chatprovider_tools.devserver import DevServer

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "operator" / "chatprovider" / "relay" / "playground" / "static"
SCREENSHOT = ROOT / "docs" / "img" / "playground.png"
BROWSER = os.environ.get("CHATPROVIDER_BROWSER", "/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync"]
VLLM_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SECRET_NAME = "vllm-api-key"
HEADER_VALUE = "header-value-that-must-not-leak"
KEY = "sk-key-that-must-not-leak"


# ---- fixtures ----------------------------------------------------------------------------------

def _namespace(k8s: k8s_client.ApiClient, preferred: str | None = None) -> str:
    """A new namespace: ``preferred`` (for a readable screenshot) unless it exists already."""
    core = k8s_client.CoreV1Api(k8s)
    for name in filter(None, (preferred, f"pg-{uuid.uuid4().hex[:8]}")):
        try:
            core.create_namespace({"metadata": {"name": name}})
            return name
        except k8s_client.ApiException as exc:
            if exc.status != 409:
                raise
    raise AssertionError("unreachable")


def _provider(name: str, endpoint: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "ai.chatprovider.dev/v1alpha1", "kind": "ChatProvider",
            "metadata": {"name": name}, "spec": {"endpoint": endpoint, **spec}}


def _apply(kubectl, namespace: str, *docs: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))


def _wait_condition(kubectl, namespace: str, name: str, condition: str) -> None:
    kubectl("wait", f"--for=condition={condition}", "--timeout=30s", "-n", namespace,
            f"chatprovider/{name}")


@pytest.fixture(scope="module")
def upstream() -> Iterator[DevServer]:
    with DevServer("vllm", api_keys={KEY}) as server:
        yield server


@pytest.fixture(scope="module")
def open_stack(kubeconfig, k8s, kubectl, chatprovider_crd, upstream) -> Iterator[OperatorStack]:
    """Authentication off (``chatprovider up --relay-auth none``): providers ``vllm`` (Ready,
    with a key, a header, a CA-less plain endpoint) and ``broken`` (nothing listens at its port)."""
    ns = _namespace(k8s, preferred="team-a")
    _apply(kubectl, ns,
           {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET_NAME},
            "stringData": {"apiKey": KEY}},
           _provider("vllm", upstream.base_url, serverType="vllm", displayName="vLLM Llama 3",
                     description="Llama on the shared GPU pool", tags=["gpu", "llama"],
                     apiKeySecretRef={"name": SECRET_NAME},
                     headers=[{"name": "X-Org-Id", "value": HEADER_VALUE}]),
           _provider("broken", "http://127.0.0.1:9", displayName="Broken endpoint"))
    settings = RelaySettings(port=0, auth_mode=AuthMode.NONE, playground=True)
    with OperatorStack(kubeconfig, settings, namespaces=(ns,)) as stack:
        stack.namespace = ns  # type: ignore[attr-defined]
        _wait_condition(kubectl, ns, "vllm", "Ready")
        _wait_condition(kubectl, ns, "broken", "Ready=False")
        yield stack


@pytest.fixture(scope="module")
def rbac_stack(kubeconfig, k8s, kubectl, chatprovider_crd, upstream, mint_token
               ) -> Iterator[tuple[OperatorStack, dict[str, str]]]:
    """Kubernetes authentication: ``alice`` may use ``shared`` only; ``bob`` may use nothing."""
    ns = _namespace(k8s)
    _apply(kubectl, ns,
           {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "key"},
            "stringData": {"apiKey": KEY}},
           _provider("shared", upstream.base_url, apiKeySecretRef={"name": "key"}),
           _provider("private", upstream.base_url, apiKeySecretRef={"name": "key"}),
           {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "use-shared"},
            "rules": [{"apiGroups": ["ai.chatprovider.dev"], "resources": ["chatproviders"],
                       "resourceNames": ["shared"], "verbs": ["use"]}]},
           {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "alice-uses-shared"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "use-shared"},
            "subjects": [{"kind": "ServiceAccount", "name": "alice", "namespace": ns}]})
    tokens = {"alice": mint_token(ns, "alice", audience=RELAY_AUDIENCE),
              "bob": mint_token(ns, "bob", audience=RELAY_AUDIENCE)}
    settings = RelaySettings(port=0, auth_mode=AuthMode.KUBERNETES, playground=True)
    with OperatorStack(kubeconfig, settings, namespaces=(ns,)) as stack:
        stack.namespace = ns  # type: ignore[attr-defined]
        for name in ("shared", "private"):
            _wait_condition(kubectl, ns, name, "Ready")
        yield stack, tokens


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(BROWSER).is_file() and os.access(BROWSER, os.X_OK)):
        pytest.fail(f"no Chromium at {BROWSER}: run `bash scripts/install-browser.sh` (or set "
                    "CHATPROVIDER_BROWSER)", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the Python package playwright is missing: run `make setup`", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=BROWSER, args=BROWSER_ARGS)
        yield chromium
        chromium.close()


class PageProbe:
    """A page with its console errors and CSP violations recorded."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1200, "height": 760},
                                           color_scheme="light")
        self.page = self.context.new_page()
        self.base = base
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(m.text))
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))
        self.page.on("requestfailed", lambda r: self.problems.append(
            f"request failed: {r.url} {r.failure}") if "/chat/completions" not in r.url else None)
        self.page.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => "
            "console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))")
        self.requests: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self) -> Any:
        self.page.goto(self.base + "/")
        self.page.wait_for_selector("body[data-loaded]")
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture()
def page_probe(browser) -> Iterator[Any]:
    probes: list[PageProbe] = []

    def make(base: str) -> PageProbe:
        probe = PageProbe(browser, base)
        probes.append(probe)
        return probe

    yield make
    for probe in probes:
        probe.close()


# ---- the HTTP surface --------------------------------------------------------------------------

def test_the_playground_is_off_unless_asked_for() -> None:
    def paths(settings: RelaySettings) -> set[str]:
        relay = Relay(settings, Registry(), None, None)  # type: ignore[arg-type]
        return {r.resource.canonical for r in relay.app.router.routes() if r.resource}

    off = paths(RelaySettings(auth_mode=AuthMode.NONE))
    on = paths(RelaySettings(auth_mode=AuthMode.NONE, playground=True))
    assert "/" not in off and "/v1/providers" not in off
    assert on - off == {"/", "/playground/playground.css", "/playground/playground.js",
                        "/v1/providers"}


def test_page_and_assets_are_served_with_a_strict_policy(open_stack) -> None:
    for path, (_, content_type) in FILES.items():
        r = httpx.get(open_stack.base + path)
        assert r.status_code == 200, path
        assert r.headers["Content-Type"] == content_type
        assert r.headers["Content-Security-Policy"] == CSP
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        again = httpx.get(open_stack.base + path, headers={"If-None-Match": r.headers["ETag"]})
        assert again.status_code == 304 and again.content == b""
    assert "script-src 'self'" in CSP and "'unsafe-inline'" not in CSP
    missing = httpx.get(open_stack.base + "/playground/secrets.txt")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_the_page_loads_nothing_from_elsewhere_and_injects_no_html() -> None:
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, path.name
        assert "eval(" not in text, path.name
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    assert "<script>" not in html and " style=" not in html and " on" + "click=" not in html


def test_providers_show_health_but_never_endpoint_or_credentials(open_stack, upstream) -> None:
    ns = open_stack.namespace
    r = httpx.get(f"{open_stack.relay_url}/providers")
    assert r.status_code == 200
    body = r.json()
    by_name = {p["name"]: p for p in body["data"]}
    assert set(by_name) == {"vllm", "broken"}
    vllm, broken = by_name["vllm"], by_name["broken"]
    assert vllm["id"] == f"{ns}/vllm" and vllm["ready"] is True and vllm["reason"] == "Ready"
    assert vllm["displayName"] == "vLLM Llama 3" and vllm["tags"] == ["gpu", "llama"]
    assert f"{ns}/vllm/{VLLM_MODEL}" in vllm["models"]
    assert {c["type"] for c in vllm["conditions"]} == {
        "Ready", "SecretResolved", "EndpointReachable", "Authenticated", "ModelsDiscovered",
        "Verified"}
    assert broken["ready"] is False and broken["reason"] == "ConnectionRefused"
    assert broken["models"] == []
    # No credential, header value or endpoint address anywhere; references (the Secret's name)
    # only where the operator's condition messages name them, as in `kubectl describe`.
    for leak in (KEY, HEADER_VALUE, str(upstream.port), "127.0.0.1", "X-Org-Id"):
        assert leak not in r.text, leak
    for provider in body["data"]:
        assert set(provider) == {
            "id", "object", "namespace", "name", "displayName", "description", "serverType",
            "tags", "ready", "reason", "message", "upToDate", "models", "conditions",
            "lastCheck"}
        rest = json.dumps({k: v for k, v in provider.items() if k != "conditions"})
        assert SECRET_NAME not in rest


def test_providers_list_only_what_the_caller_may_use(rbac_stack) -> None:
    stack, tokens = rbac_stack
    ns = stack.namespace

    def get(path: str, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{stack.relay_url}{path}", headers=headers)

    assert get("/providers", None).status_code == 401
    assert get("/providers", "not-a-token").status_code == 401
    alice = get("/providers", tokens["alice"]).json()["data"]
    assert [p["id"] for p in alice] == [f"{ns}/shared"]
    models = get("/models", tokens["alice"]).json()["data"]
    assert {m["id"] for m in models} == set(alice[0]["models"])
    assert get("/providers", tokens["bob"]).json()["data"] == []


# ---- in the browser ----------------------------------------------------------------------------

def test_chat_in_the_browser(open_stack, page_probe, tmp_path) -> None:
    ns = open_stack.namespace
    probe = page_probe(open_stack.base)
    page = probe.open()
    page.select_option("#provider", f"{ns}/vllm")
    page.select_option("#model", f"{ns}/vllm/{VLLM_MODEL}")
    assert page.inner_text("#provider-state").startswith("Ready")
    rows = page.locator("#conditions tbody tr")
    assert rows.count() == 5
    assert page.get_attribute('#conditions tr[data-type="EndpointReachable"]',
                              "data-status") == "True"
    assert VLLM_MODEL in (page.text_content("#snippet-code") or "")

    page.fill("#prompt", "Say hello to the new provider.")
    page.click("#send")
    answer = page.locator('.message.assistant[data-state="done"]')
    answer.wait_for(timeout=15000)
    assert answer.locator(".text").inner_text() == \
        f"Hello from {VLLM_MODEL}! This is a deterministic reply."
    assert f"{ns}/vllm" in answer.locator(".meta").inner_text()

    # A second turn sends the whole conversation.
    page.fill("#prompt", "And again?")
    page.locator("#prompt").press("Enter")
    page.locator('.message.assistant[data-state="done"]').nth(1).wait_for(timeout=15000)
    assert page.locator(".message.user").count() == 2

    page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
    if os.environ.get("CHATPROVIDER_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "playground.png", SCREENSHOT)
    assert probe.problems == []
    assert all(url.startswith(open_stack.base) for url in probe.requests), probe.requests


def test_a_provider_that_is_not_ready_says_why(open_stack, page_probe) -> None:
    ns = open_stack.namespace
    page = page_probe(open_stack.base).open()
    option = page.inner_text(f'#provider option[value="{ns}/broken"]')
    assert "not ready: ConnectionRefused" in option
    page.select_option("#provider", f"{ns}/broken")
    state = page.locator("#provider-state")
    assert state.get_attribute("data-ready") == "false"
    assert "ConnectionRefused" in state.inner_text()
    assert page.get_attribute('#conditions tr[data-type="EndpointReachable"]',
                              "data-status") == "False"
    assert page.is_disabled("#model") and page.is_disabled("#send")


def test_upstream_errors_and_stop_are_shown(open_stack, upstream, page_probe) -> None:
    ns = open_stack.namespace
    page = page_probe(open_stack.base).open()
    page.select_option("#provider", f"{ns}/vllm")
    upstream.behaviour.update(status=503, fault_paths={"/v1/chat/completions"})
    try:
        page.fill("#prompt", "hello?")
        page.click("#send")
        failed = page.locator('.message.assistant[data-state="error"]')
        failed.wait_for(timeout=15000)
        assert page.inner_text("#status").startswith("The request failed")
        assert failed.locator(".meta").inner_text().startswith("error")
        assert failed.locator(".text").inner_text().strip() != ""
    finally:
        upstream.behaviour.reset()

    upstream.behaviour.update(frame_delay=0.5, stream_frames=8)
    try:
        cancelled_before = upstream.cancelled
        page.fill("#prompt", "a slow answer, please")
        page.click("#send")
        page.wait_for_selector('.message.assistant[data-state="streaming"] .text:not(:empty)')
        page.click("#stop")
        page.locator('.message.assistant[data-state="stopped"]').wait_for(timeout=5000)
        assert upstream.wait_cancelled(cancelled_before + 1, timeout=5)
    finally:
        upstream.behaviour.reset()
    assert not page.is_disabled("#send")


def test_sign_in_with_a_kubernetes_token(rbac_stack, page_probe) -> None:
    stack, tokens = rbac_stack
    ns = stack.namespace
    probe = page_probe(stack.base)
    page = probe.open()
    assert page.is_visible("#auth")
    page.fill("#token", "not-a-token")
    page.click("#sign-in")
    page.wait_for_selector("#auth-message:has-text('Refused')")
    page.fill("#token", tokens["alice"])
    page.click("#sign-in")
    page.wait_for_selector("#auth", state="hidden")
    options = page.locator("#provider option").evaluate_all("os => os.map(o => o.value)")
    assert options == [f"{ns}/shared"]
    page.fill("#prompt", "hi")
    page.click("#send")
    page.locator('.message.assistant[data-state="done"]').wait_for(timeout=15000)
    # The 401s of the refused token are expected console noise; nothing else is.
    assert [p for p in probe.problems if "401" not in p] == []


def test_the_stream_parser_follows_the_sse_rules(open_stack, page_probe) -> None:
    page = page_probe(open_stack.base).open()
    events = page.evaluate("""async () => {
        const { sseEvents } = await import('/playground/playground.js');
        const chunks = ['data: {"a"', ':1}\\r', '\\n\\r\\n: keep-alive\\n\\n',
                        'data: x\\ndata: y\\n\\n', 'event: ignored\\ndata:no-space\\n\\n',
                        'data: [DONE]\\n\\n', 'data: tail'];
        const enc = new TextEncoder();
        const stream = new ReadableStream({ start(c) {
            for (const chunk of chunks) c.enqueue(enc.encode(chunk)); c.close(); } });
        const out = [];
        for await (const data of sseEvents(stream)) out.push(data);
        return out;
    }""")
    assert events == ['{"a":1}', "x\ny", "no-space", "[DONE]", "tail"]
