"""The dev server answers OpenAI's Responses API and Anthropic's Messages API, deterministically,
in shapes the official SDKs read (their stream helpers included)."""

from __future__ import annotations

import anthropic
import openai
import pytest
from devserver_helpers import KEY, VLLM_MODEL

REPLY = f"Hello from {VLLM_MODEL}! This is a deterministic reply."
HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def oai(vllm):
    with openai.OpenAI(base_url=vllm.url, api_key=KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def claude(vllm):
    # the dev server checks the bearer (as vLLM does); the relay sends both headers
    with anthropic.Anthropic(base_url=vllm.base_url, auth_token=KEY, max_retries=0) as client:
        yield client


def test_responses(oai):
    answer = oai.responses.create(model=VLLM_MODEL, input="Say hello")
    assert (answer.status, answer.output_text) == ("completed", REPLY)
    assert answer.usage.output_tokens == 8 and answer.id.startswith("resp_")
    short = oai.responses.create(model=VLLM_MODEL, input="Say hello", max_output_tokens=2)
    assert short.usage.output_tokens == 2


def test_responses_stream_and_the_sdks_stream_helper(oai):
    kinds = [e.type for e in oai.responses.create(model=VLLM_MODEL, input="hi", stream=True)]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    with oai.responses.stream(model=VLLM_MODEL, input="hi") as stream:
        assert stream.get_final_response().output_text == REPLY


def test_messages_stream_and_count_tokens(claude):
    message = claude.messages.create(model=VLLM_MODEL, messages=HELLO, max_tokens=100)
    assert (message.content[0].text, message.stop_reason) == (REPLY, "end_turn")
    assert claude.messages.create(model=VLLM_MODEL, messages=HELLO,
                                  max_tokens=3).stop_reason == "max_tokens"
    with claude.messages.stream(model=VLLM_MODEL, messages=HELLO, max_tokens=100) as stream:
        assert stream.get_final_text() == REPLY
        assert stream.get_final_message().usage.output_tokens == 8
    counted = claude.messages.count_tokens(model=VLLM_MODEL, messages=HELLO)
    assert counted.input_tokens == message.usage.input_tokens == 5


def test_unknown_models_and_missing_fields_are_refused(oai, claude):
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="nope", input="hi")
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="nope", messages=HELLO, max_tokens=4)
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(model=VLLM_MODEL)  # type: ignore[call-overload]
