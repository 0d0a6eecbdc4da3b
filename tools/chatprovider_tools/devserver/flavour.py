"""Flavours: the look of a real OpenAI-compatible server (default port, model ids, ``owned_by``).

A flavour only changes what the dev server *looks like* (the model list, the port the CLI binds
by default, whether the CLI asks for a key); the wire format of the answers is the same.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FLAVOURS", "Flavour", "get_flavour"]


@dataclass(frozen=True, slots=True)
class Flavour:
    """The observable traits of one kind of server."""

    name: str
    """Flavour name, as given to ``--flavour`` (vllm, ollama, tgi, generic)."""
    default_port: int
    """Port the real server listens on by default (used by the CLI when no port is given)."""
    owned_by: str
    """Value of ``owned_by`` in ``GET /v1/models``."""
    models: tuple[str, ...]
    """Model ids served by default."""
    uses_api_key: bool
    """Whether the real server is usually run with an API key (vLLM's ``--api-key``)."""
    health_path: str
    """Unauthenticated liveness route of the real server."""
    health_body: bytes
    """Body of the liveness answer."""


FLAVOURS: dict[str, Flavour] = {
    "vllm": Flavour(
        name="vllm",
        default_port=8000,
        owned_by="vllm",
        models=("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"),
        uses_api_key=True,
        health_path="/health",
        health_body=b"",
    ),
    "ollama": Flavour(
        name="ollama",
        default_port=11434,
        owned_by="library",
        models=("llama3:8b", "qwen2.5:0.5b"),
        uses_api_key=False,
        health_path="/",
        health_body=b"Ollama is running",
    ),
    "tgi": Flavour(
        name="tgi",
        default_port=8080,
        owned_by="tgi",
        models=("tgi",),
        uses_api_key=False,
        health_path="/health",
        health_body=b"",
    ),
    "generic": Flavour(
        name="generic",
        default_port=8000,
        owned_by="devserver",
        models=("devserver-chat", "devserver-mini"),
        uses_api_key=False,
        health_path="/health",
        health_body=b"",
    ),
}
"""All flavours by name. Read-only by convention."""


def get_flavour(name: str) -> Flavour:
    """Return the flavour called ``name``; raise ``ValueError`` naming the known ones otherwise."""
    try:
        return FLAVOURS[name]
    except KeyError:
        known = ", ".join(sorted(FLAVOURS))
        raise ValueError(f"unknown flavour {name!r} (known: {known})") from None
