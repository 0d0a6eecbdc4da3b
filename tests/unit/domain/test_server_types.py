"""What each server type adds to a check: its own model list where /v1/models is missing."""

from __future__ import annotations

import pytest

from chatprovider.api.v1alpha1 import ServerType
from chatprovider.domain.discovery import ModelsShapeError
from chatprovider.domain.server_types import models_fallback, server_root


def test_ollama_lists_its_pulled_models_from_api_tags() -> None:
    fallback = models_fallback(ServerType.OLLAMA)
    assert fallback is not None and fallback.route == "GET /api/tags"
    tags = {"models": [{"name": "llama3:8b", "model": "llama3:8b", "size": 4661224676},
                       {"name": "qwen2.5:0.5b"}, {"size": 1}, "junk"]}
    assert [m.id for m in fallback.parse(tags)] == ["llama3:8b", "qwen2.5:0.5b"]


def test_tgi_names_its_one_model_in_info() -> None:
    fallback = models_fallback(ServerType.TGI)
    assert fallback is not None and fallback.route == "GET /info"
    info = {"model_id": "HuggingFaceTB/SmolLM2-135M-Instruct", "max_input_tokens": 4095}
    assert [m.id for m in fallback.parse(info)] == ["HuggingFaceTB/SmolLM2-135M-Instruct"]


@pytest.mark.parametrize(("server_type", "payload"), [
    (ServerType.OLLAMA, {"data": []}), (ServerType.OLLAMA, [1]),
    (ServerType.TGI, {"model": "x"}), (ServerType.TGI, "tgi"),
])
def test_another_shape_is_a_shape_error(server_type: ServerType, payload: object) -> None:
    fallback = models_fallback(server_type)
    assert fallback is not None
    with pytest.raises(ModelsShapeError):
        fallback.parse(payload)


@pytest.mark.parametrize("server_type", [ServerType.GENERIC, ServerType.VLLM,
                                         ServerType.LLAMACPP, ServerType.LITELLM,
                                         ServerType.OPENAI])
def test_servers_that_answer_v1_models_themselves_have_no_fallback(
        server_type: ServerType) -> None:
    assert models_fallback(server_type) is None


def test_the_root_is_the_base_url_without_its_version() -> None:
    assert server_root("http://ollama:11434/v1") == "http://ollama:11434"
    assert server_root("https://gw.example/ollama/v1") == "https://gw.example/ollama"
