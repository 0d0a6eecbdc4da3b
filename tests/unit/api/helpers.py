"""A ChatProvider's spec and status as the API server serves them, for the tests of the API
models and of the registry that keeps them."""

from __future__ import annotations

from typing import Any

SPEC: dict[str, Any] = {"endpoint": "http://vllm.ml:8000/v1", "serverType": "vllm",
                        "apiKeySecretRef": {"name": "vllm-key"},
                        "discovery": {"interval": "2m"}}
STATUS: dict[str, Any] = {
    "observedGeneration": 3,
    "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "ok",
                    "lastTransitionTime": "2026-12-07T06:00:00Z", "observedGeneration": 3}],
    "models": [{"id": "llama"}, {"id": "qwen"}],
}
