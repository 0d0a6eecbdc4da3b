"""What the operator knows of each kind of server (``spec.serverType``) (pure).

Every server type is checked the same way first: ``GET /v1/models``, then the test message when
it is enabled. A type whose server may lack that route, or answer it poorly, names a fallback: a
route of its own, under the server's root (the base URL without its version segment), tried
when ``GET /v1/models`` answers 404 or 405:

===========  =====================  ===========================================================
serverType   fallback               what it lists
===========  =====================  ===========================================================
``ollama``   ``GET /api/tags``      the pulled models (``models[].model``, else ``.name``)
``tgi``      ``GET /info``          the one model served (``model_id``)
others       none                   vLLM, llama.cpp's ``llama-server``, LiteLLM and OpenAI
                                    answer ``GET /v1/models`` themselves
===========  =====================  ===========================================================

A fallback that answers 200 with a model list makes the provider's models discovered and the
key checked, exactly as ``GET /v1/models`` would; otherwise the answer of ``GET /v1/models``
stands (and ``spec.models.static`` is used as before).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chatprovider.api.v1alpha1 import ServerType
from chatprovider.domain.discovery import ModelEntry, ModelsShapeError, parse_models

__all__ = ["ModelsFallback", "models_fallback", "server_root"]


@dataclass(frozen=True)
class ModelsFallback:
    """A server type's own model list, for a server without a usable ``GET /v1/models``."""

    path: str
    """Under the server's root, such as ``/api/tags``."""
    parse: Callable[[Any], list[ModelEntry]]
    """Its answer to model entries; raises :class:`ModelsShapeError` on another shape."""

    @property
    def route(self) -> str:
        """How messages name the call: ``GET /api/tags``."""
        return f"GET {self.path}"


def _ollama_tags(payload: Any) -> list[ModelEntry]:
    models = payload.get("models") if isinstance(payload, dict) else None
    if not isinstance(models, list):
        raise ModelsShapeError("the answer has no 'models' list")
    ids = [{"id": m.get("model") or m.get("name")} for m in models if isinstance(m, dict)]
    return parse_models({"data": ids})


def _tgi_info(payload: Any) -> list[ModelEntry]:
    model_id = payload.get("model_id") if isinstance(payload, dict) else None
    if not isinstance(model_id, str):
        raise ModelsShapeError("the answer has no 'model_id'")
    return parse_models({"data": [{"id": model_id}]})


_FALLBACKS = {
    ServerType.OLLAMA: ModelsFallback("/api/tags", _ollama_tags),
    ServerType.TGI: ModelsFallback("/info", _tgi_info),
}


def models_fallback(server_type: ServerType) -> ModelsFallback | None:
    """The fallback of ``server_type``, if it has one."""
    return _FALLBACKS.get(server_type)


def server_root(base_url: str) -> str:
    """The server's root: ``base_url`` (which always ends in a version segment, such as
    ``http://ollama:11434/v1``) without that segment (``http://ollama:11434``)."""
    return base_url.rsplit("/", 1)[0]
