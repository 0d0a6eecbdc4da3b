"""llama.cpp's own ``llama-server`` with Gemma 3 270M as a local process: the upstream of
``chatprovider up``, and of the tests that talk to a real model (``tests/realupstreams.py``).

``scripts/install-llama-server.sh`` builds the server from the llama.cpp source that the
``llama-cpp-python`` sdist vendors and puts the model beside it, under
``${CHATPROVIDER_CACHE:-~/.cache/chatprovider}/llama-server/<version>``; the version is pinned
once, in ``scripts/install-upstreams.sh`` (``$LLAMA_CPP_VERSION`` overrides it, as in the
scripts). The GGUF carries no chat template, so the server is started with Jinja and
:data:`GEMMA_TEMPLATE` (Gemma's turn format), which ships with this package.

    with LlamaServer(api_key="sk-...", log_path=Path("llama.log")) as server:
        server.url          # http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from chatprovider_tools.controlplane.plane import LoggedProcess, free_port
from chatprovider_tools.generators.paths import repository_root

__all__ = [
    "CTX_SIZE", "GEMMA_TEMPLATE", "INSTALL_HINT", "MODEL_ALIAS", "LlamaServer", "LlamaServerError",
    "LlamaServerNotInstalled", "check_installed", "install_dir", "server_argv", "server_env",
]

MODEL_ALIAS = "gemma-3-270m"
"""The model id the server offers (``--alias``)."""
CTX_SIZE = 2048
"""Context size (tokens, shared by its one slot)."""
GEMMA_TEMPLATE = Path(__file__).resolve().parent / "templates" / "gemma.jinja"
"""Gemma's turn format as a Jinja chat template, for ``--chat-template-file``."""
INSTALL_HINT = "build it with `make setup-demo` (or `bash scripts/install-llama-server.sh`)"


class LlamaServerError(RuntimeError):
    """The server did not start; the message holds the end of its log."""


class LlamaServerNotInstalled(LlamaServerError):
    """The binary or the model is missing; the message says how to install them."""


def _cache() -> Path:
    return Path(os.environ.get("CHATPROVIDER_CACHE") or Path.home() / ".cache" / "chatprovider")


def _pinned_version() -> str:
    if value := os.environ.get("LLAMA_CPP_VERSION"):
        return value
    script = repository_root() / "scripts" / "install-upstreams.sh"
    match = re.search(r"^LLAMA_CPP_VERSION=\$\{LLAMA_CPP_VERSION:-(.+)\}$",
                      script.read_text(), re.MULTILINE)
    if match is None:
        raise LlamaServerNotInstalled(f"{script} pins no LLAMA_CPP_VERSION")
    return match.group(1)


def install_dir() -> Path:
    """Where the install script puts ``bin/llama-server`` and ``gemma-3-270m.gguf``."""
    return _cache() / "llama-server" / _pinned_version()


def server_argv(port: int, api_key: str, *extra: str, root: Path | None = None,
                host: str = "127.0.0.1", template: Path = GEMMA_TEMPLATE) -> list[str]:
    """The command line: on ``host`` (loopback), behind ``api_key``, 2 threads, one slot, Jinja
    with Gemma's ``template``. ``root`` holds ``bin/llama-server`` and the model (the install
    directory; in the e2e tests' image, ``/opt/llama``)."""
    root = root or install_dir()
    return [
        str(root / "bin" / "llama-server"), "--model", str(root / "gemma-3-270m.gguf"),
        "--alias", MODEL_ALIAS, "--host", host, "--port", str(port), "--api-key", api_key,
        "--threads", "2", "--threads-batch", "2", "--ctx-size", str(CTX_SIZE), "--parallel", "1",
        "--no-webui", "--jinja", "--chat-template-file", str(template), *extra,
    ]


def server_env() -> dict[str, str]:
    """This process's environment without what would change the server: ``LLAMA_ARG_*`` and
    ``LLAMA_API_KEY`` override flags, ``HF_*`` point at Hugging Face, proxies are not wanted
    on loopback."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("LLAMA_ARG_", "LLAMA_API_KEY", "HF_"))
            and not k.upper().endswith("_PROXY")}


def check_installed() -> Path:
    """The install directory, or :class:`LlamaServerNotInstalled` naming what is missing."""
    root = install_dir()
    missing = [str(p) for p in (root / "bin" / "llama-server", root / "gemma-3-270m.gguf")
               if not p.exists()]
    if missing:
        raise LlamaServerNotInstalled(
            f"llama.cpp's llama-server is not installed (missing {', '.join(missing)}): "
            f"{INSTALL_HINT}")
    return root


class LlamaServer:
    """One ``llama-server`` on a free loopback port, killed with this process at the latest."""

    def __init__(self, api_key: str, log_path: Path, port: int = 0,
                 ready_timeout: float = 60.0) -> None:
        root = check_installed()
        self.api_key, self.log_path, self.ready_timeout = api_key, log_path, ready_timeout
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process = LoggedProcess("llama-server", server_argv(self.port, api_key, root=root),
                                     log_path, env=server_env())
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        """The OpenAI base URL (``base_url + "/v1"``)."""
        return self.base_url + "/v1"

    def start(self) -> LlamaServer:
        began = time.monotonic()
        self.process.start()
        try:
            self._wait_healthy(began)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _wait_healthy(self, began: float) -> None:
        # /health needs no key: 503 while the model loads, 200 once requests are served.
        popen = self.process.popen
        assert popen is not None
        while True:
            if popen.poll() is not None:
                raise LlamaServerError(f"llama-server exited with {popen.returncode} before "
                                       f"it was ready:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() - began > self.ready_timeout:
                raise LlamaServerError(f"llama-server was not ready within "
                                       f"{self.ready_timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        self.process.stop(timeout)

    def log_tail(self, lines: int = 30) -> str:
        return self.process.tail(lines) or "(no log)"

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
