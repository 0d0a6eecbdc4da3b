"""Which operations the relay forwards, under which API, and where."""

from __future__ import annotations

import pytest

from chatprovider.domain.apis import Api, Operation, api_of_path


def test_every_operation_has_a_route_an_api_and_an_upstream_url() -> None:
    assert {op.path: (op.api, op.streams) for op in Operation} == {
        "/v1/chat/completions": (Api.OPENAI, True),
        "/v1/completions": (Api.OPENAI, True),
        "/v1/embeddings": (Api.OPENAI, False),
        "/v1/responses": (Api.OPENAI, True),
        "/v1/messages": (Api.ANTHROPIC, True),
        "/v1/messages/count_tokens": (Api.ANTHROPIC, False),
    }
    assert Operation.COUNT_TOKENS.url("http://llama:8080/v1") == \
        "http://llama:8080/v1/messages/count_tokens"
    assert Operation.CHAT.url("https://h/openai/v1") == "https://h/openai/v1/chat/completions"


@pytest.mark.parametrize(("path", "api"), [
    ("/v1/messages", Api.ANTHROPIC),
    ("/v1/messages/count_tokens", Api.ANTHROPIC),
    ("/v1/messages/batches", Api.ANTHROPIC),   # an unknown route under Anthropic's: its 404
    ("/v1/messagesx", Api.OPENAI),
    ("/v1/responses", Api.OPENAI),
    ("/v1/chat/completions", Api.OPENAI),
    ("/v1/models", Api.OPENAI),
    ("/nowhere", Api.OPENAI),
])
def test_the_api_of_a_path_decides_its_error_envelope(path: str, api: Api) -> None:
    assert api_of_path(path) is api
