"""Helpers shared by the dev server tests (imported by module name: this folder is on sys.path)."""

from __future__ import annotations

KEY = "sk-test-key"
VLLM_MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def chat_body(model: str = VLLM_MODEL, **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "Say hi"}], **extra}


def sse_events(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data: "):] for line in text.split("\n\n") if line.startswith("data: ")]
