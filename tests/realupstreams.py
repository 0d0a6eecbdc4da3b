"""Pytest plugin: real third-party OpenAI-compatible servers as session fixtures.

- ``llama_server``: llama.cpp's own HTTP server (``llama-server``, C++), built from the llama.cpp
  source that the ``llama-cpp-python`` sdist vendors, with Gemma 3 270M, a real tiny model
  (CPU, about 340 MB RSS); ``llama_server_embeddings``: a second one that serves embeddings.
- ``llama_cpp_python_server``: llama-cpp-python's server (``python -m llama_cpp.server``, a
  FastAPI app over the same library) with the same model (CPU, about 420 MB RSS).
- ``litellm_proxy``: LiteLLM's proxy with mock models, plus one model routed to a
  :class:`~chatprovider_tools.devserver.DevServer` (a real two-hop chain).

``llama-server`` and its model are installed by ``bash scripts/install-llama-server.sh`` under
``${CHATPROVIDER_CACHE:-~/.cache/chatprovider}/llama-server/<version>``; the other two come from
their own virtual environments, installed by ``bash scripts/install-upstreams.sh`` under
``.../upstreams``. Missing installs FAIL the tests that use them (a skipped test proves nothing),
with the command to run. Each server runs in its own session (process group) on a free loopback
port and the whole group is killed at teardown.

Register from ``tests/conftest.py`` with ``pytest_plugins = ["tests.realupstreams"]``.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from chatprovider_tools import llamaserver
from chatprovider_tools.devserver import DevServer

__all__ = [
    "LiteLLMProxy", "RealUpstream", "cache_dir", "litellm_proxy", "llama_cpp_python_server",
    "llama_server", "llama_server_dir", "llama_server_embeddings", "upstreams_dir",
]

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
INSTALL_HINT = "run `bash scripts/install-upstreams.sh {step}` (idempotent)"
LLAMA_SERVER_INSTALL_HINT = "run `bash scripts/install-llama-server.sh` (idempotent)"
LLAMA_MODEL_ALIAS = llamaserver.MODEL_ALIAS
LLAMA_SERVER_CTX = llamaserver.CTX_SIZE
"""Context size of ``llama-server`` (tokens, shared by its one slot)."""
GEMMA_TEMPLATE = llamaserver.GEMMA_TEMPLATE
"""Gemma's turn format as a Jinja chat template, for ``llama-server --chat-template-file``
(shipped with the workshop package: ``chatprovider up`` uses it too)."""
LITELLM_MOCK_MODELS = ("mock-gpt", "mock-small")
LITELLM_MOCK_REPLY = "Hello from the LiteLLM mock."
LITELLM_CHAIN_MODEL = "via-devserver"
LLAMA_READY_TIMEOUT = 60.0
LITELLM_READY_TIMEOUT = 120.0


@dataclass(frozen=True)
class RealUpstream:
    """A running third-party server."""

    name: str
    base_url: str
    """``http://127.0.0.1:PORT`` (no path)."""
    api_key: str
    models: tuple[str, ...]
    """Model ids it serves."""
    process: subprocess.Popen[bytes]
    log_path: Path
    """Its stdout and stderr."""
    startup_seconds: float
    """From launch to the first good answer."""

    @property
    def url(self) -> str:
        """The OpenAI base URL (``base_url + "/v1"``)."""
        return self.base_url + "/v1"

    @property
    def headers(self) -> dict[str, str]:
        """Headers carrying the API key."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log (for failure messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass(frozen=True)
class LiteLLMProxy(RealUpstream):
    """LiteLLM's proxy: ``mock_models`` answer ``mock_reply`` without a backend; ``chain_model``
    is relayed to ``chain`` (a DevServer that wants ``chain.api_keys``)."""

    mock_models: tuple[str, ...] = LITELLM_MOCK_MODELS
    mock_reply: str = LITELLM_MOCK_REPLY
    chain_model: str = LITELLM_CHAIN_MODEL
    chain: DevServer | None = field(default=None, compare=False)


def cache_dir() -> Path:
    """``${CHATPROVIDER_CACHE:-~/.cache/chatprovider}``, where the install scripts put things."""
    return Path(os.environ.get("CHATPROVIDER_CACHE")
                or str(Path.home() / ".cache" / "chatprovider"))


def upstreams_dir() -> Path:
    """Where ``scripts/install-upstreams.sh`` puts the venvs and the model."""
    return cache_dir() / "upstreams"


def llama_server_dir() -> Path:
    """Where ``scripts/install-llama-server.sh`` puts ``bin/llama-server`` and the model."""
    return llamaserver.install_dir()


def _require(paths: list[Path], what: str, hint: str) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        ci = " (CI=true)" if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else ""
        pytest.fail(f"{what} is not installed{ci}: missing {', '.join(missing)}; {hint}",
                    pytrace=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers: no orphans."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group, if any
    except (ProcessLookupError, PermissionError):
        pass
    process.wait(timeout)


def _launch(argv: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )


def _wait_ready(
    process: subprocess.Popen[bytes], log_path: Path, what: str, timeout: float,
    ready: Callable[[httpx.Client], bool],
) -> float:
    """Poll ``ready`` until it holds; fail if the process exits or the time runs out (the
    caller stops the process). Returns the seconds waited."""
    started = time.monotonic()
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while True:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-4000:]
                pytest.fail(f"{what} exited with {process.returncode} before it was ready:\n"
                            f"{tail}", pytrace=False)
            try:
                if ready(client):
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > timeout:
                tail = log_path.read_text(errors="replace")[-4000:]
                pytest.fail(f"{what} was not ready within {timeout:.0f}s:\n{tail}", pytrace=False)
            time.sleep(0.1)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.upper().endswith("_PROXY") and k not in {"DATABASE_URL", "PYTHONPATH"}}
    env.update(extra)
    return env


def _llama_server(tmp_path_factory: pytest.TempPathFactory, name: str,
                  *extra: str) -> Iterator[RealUpstream]:
    root = llama_server_dir()
    binary, model = root / "bin" / "llama-server", root / "gemma-3-270m.gguf"
    _require([binary, model], "llama.cpp's llama-server or its model", LLAMA_SERVER_INSTALL_HINT)
    port, key = _free_port(), "sk-llama-server-" + secrets.token_hex(8)
    log_path = tmp_path_factory.mktemp(name) / "server.log"
    argv = llamaserver.server_argv(port, key, *extra, root=root)
    env = llamaserver.server_env()
    process = _launch(argv, log_path, env)
    try:
        base_url = f"http://127.0.0.1:{port}"
        # /health needs no key; it is 503 while the model loads, 200 once requests are served.
        seconds = _wait_ready(
            process, log_path, f"llama.cpp's llama-server ({name})", LLAMA_READY_TIMEOUT,
            lambda c: c.get(f"{base_url}/health").status_code == 200,
        )
        print(f"\n{name} ready in {seconds:.2f}s at {base_url}")
        yield RealUpstream(name, base_url, key, (LLAMA_MODEL_ALIAS,), process, log_path, seconds)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealUpstream]:
    """llama.cpp's own ``llama-server`` with Gemma 3 270M on a free loopback port, behind an API
    key (``Authorization: Bearer`` or Anthropic's ``x-api-key``).

    One slot (``--parallel 1``: requests queue), 2 threads, ``LLAMA_SERVER_CTX`` tokens of
    context, Jinja templates (its default) with ``GEMMA_TEMPLATE``: the GGUF carries no chat
    template, llama-server would fall back to ChatML, and ``--chat-template gemma`` under Jinja
    is the literal template "gemma". A chat server: ``/v1/embeddings`` answers 501 (see
    :func:`llama_server_embeddings`). Base model: assert on shapes, not content, and always send
    a small ``max_tokens`` (``/v1/messages`` defaults to 4096).
    """
    yield from _llama_server(tmp_path_factory, "llama-server")


@pytest.fixture(scope="session")
def llama_server_embeddings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealUpstream]:
    """A second ``llama-server`` like :func:`llama_server`, started with ``--embeddings
    --pooling mean`` so that ``/v1/embeddings`` answers (640 floats per input). Chat still works
    on it, but ``--embeddings`` is documented as restricting the server to embeddings and caps
    the batch at ``n_ubatch``, so the chat fixture stays a plain chat server. Without
    ``--pooling mean`` the model's pooling is ``none`` and ``/v1/embeddings`` answers 400.
    """
    yield from _llama_server(tmp_path_factory, "llama-server-embeddings",
                             "--embeddings", "--pooling", "mean")


@pytest.fixture(scope="session")
def llama_cpp_python_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealUpstream]:
    """llama-cpp-python's server (``python -m llama_cpp.server``) with Gemma 3 270M on a free
    loopback port, behind an API key.

    Base model: assert on shapes, not content, and always send a small ``max_tokens``.
    """
    root = upstreams_dir()
    python = root / "llama-venv" / "bin" / "python"
    model = root / "gemma-3-270m.gguf"
    _require([python, model], "llama-cpp-python's server (llama-cpp-python[server]) or its model",
             INSTALL_HINT.format(step="llama"))
    port, key = _free_port(), "sk-llama-" + secrets.token_hex(8)
    log_path = tmp_path_factory.mktemp("llama-cpp-python-server") / "server.log"
    argv = [
        str(python), "-m", "llama_cpp.server", "--model", str(model),
        "--model_alias", LLAMA_MODEL_ALIAS, "--chat_format", "gemma",
        "--host", "127.0.0.1", "--port", str(port), "--api_key", key,
        "--n_threads", "2", "--n_ctx", "2048", "--interrupt_requests", "False",
        "--verbose", "False",
    ]
    process = _launch(argv, log_path, _clean_env())
    try:
        base_url = f"http://127.0.0.1:{port}"
        seconds = _wait_ready(
            process, log_path, "llama-cpp-python's server", LLAMA_READY_TIMEOUT,
            lambda c: c.get(f"{base_url}/v1/models",
                            headers={"Authorization": f"Bearer {key}"}).status_code == 200,
        )
        print(f"\nllama-cpp-python's server ready in {seconds:.2f}s at {base_url}")
        yield RealUpstream("llama-cpp-python", base_url, key, (LLAMA_MODEL_ALIAS,), process,
                           log_path, seconds)
    finally:
        _stop(process)


def _litellm_config(master_key: str, chain: DevServer, chain_key: str) -> dict[str, object]:
    mocks: list[dict[str, object]] = [
        {"model_name": name,
         "litellm_params": {"model": f"openai/{name}", "api_key": "unused",
                            "mock_response": LITELLM_MOCK_REPLY}}
        for name in LITELLM_MOCK_MODELS
    ]
    chained = {"model_name": LITELLM_CHAIN_MODEL,
               "litellm_params": {"model": f"openai/{chain.models[0]}", "api_key": chain_key,
                                  "api_base": chain.url}}
    return {"model_list": [*mocks, chained], "general_settings": {"master_key": master_key}}


@pytest.fixture(scope="session")
def litellm_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteLLMProxy]:
    """LiteLLM's proxy with mock models and a model chained to a DevServer, master key set.

    Quirks: a missing key is 401 (``code`` is the string "401"); a wrong key is 400
    ``no_db_connection`` (no database configured). Per-request faults: ``"mock_response":
    "litellm.RateLimitError"`` (429), ``"mock_delay": 2``.
    """
    root = upstreams_dir()
    venv = root / "litellm-venv"
    litellm = venv / "bin" / "litellm"
    _require([litellm], "LiteLLM's proxy (litellm[proxy])", INSTALL_HINT.format(step="litellm"))
    if bad := list(venv.glob("lib/python*/site-packages/litellm_init.pth")):
        pytest.fail(f"{bad[0]} exists: the venv holds a MALICIOUS litellm release; delete "
                    f"{venv} and reinstall", pytrace=False)
    workdir = tmp_path_factory.mktemp("litellm")
    chain_key = "sk-chain-" + secrets.token_hex(8)
    master_key = "sk-master-" + secrets.token_hex(8)
    with DevServer("generic", api_keys={chain_key}) as chain:
        config = workdir / "config.yaml"
        config.write_text(yaml.safe_dump(_litellm_config(master_key, chain, chain_key)))
        port = _free_port()
        argv = [str(litellm), "--config", str(config), "--host", "127.0.0.1",
                "--port", str(port), "--telemetry", "False"]
        env = _clean_env(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
        log_path = workdir / "proxy.log"
        process = _launch(argv, log_path, env)
        try:
            base_url = f"http://127.0.0.1:{port}"
            seconds = _wait_ready(
                process, log_path, "LiteLLM's proxy", LITELLM_READY_TIMEOUT,
                lambda c: c.get(f"{base_url}/health/liveliness").status_code == 200,
            )
            print(f"\nLiteLLM proxy ready in {seconds:.2f}s at {base_url}")
            models = (*LITELLM_MOCK_MODELS, LITELLM_CHAIN_MODEL)
            yield LiteLLMProxy("litellm", base_url, master_key, models, process, log_path,
                               seconds, chain=chain)
        finally:
            _stop(process)
