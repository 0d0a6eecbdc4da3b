"""Which operations the relay forwards, under which API, and where."""

from __future__ import annotations

import pytest

from chatprovider.domain.apis import (
    PROBED,
    Api,
    Operation,
    api_of_path,
    offered_by,
    offers,
    probe_body,
)


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


def test_a_probe_asks_for_no_inference_and_caps_any_it_gets() -> None:
    assert Operation.CHAT not in PROBED  # what a ChatProvider is: never probed
    bodies = {op: probe_body(op, "gemma") for op in PROBED}
    for body in bodies.values():
        assert body["model"] == "gemma"
        assert not {"messages", "prompt", "input"} & body.keys()
    assert bodies[Operation.COMPLETIONS]["max_tokens"] == 1
    assert bodies[Operation.MESSAGES]["max_tokens"] == 1
    assert bodies[Operation.RESPONSES]["max_output_tokens"] == 16


@pytest.mark.parametrize(("status", "offered"), [
    (400, True), (422, True), (500, True), (401, True), (None, True), (200, True),
    (404, False), (405, False), (501, False),
])
def test_only_404_405_and_501_say_a_route_is_missing(status: int | None, offered: bool) -> None:
    assert offered_by(status) is offered


def test_a_provider_whose_apis_are_unknown_is_sent_every_operation() -> None:
    assert all(offers([], op) for op in Operation)
    known = ["chat/completions", "embeddings"]
    assert [op for op in Operation if offers(known, op)] == [Operation.CHAT,
                                                             Operation.EMBEDDINGS]
