"""What a request reserves, and what it is charged."""

from __future__ import annotations

import json

import pytest

from chatprovider.domain.apis import Operation
from chatprovider.domain.quota.demand import (
    Demand,
    ReservationPolicy,
    charged_demand,
    cut_stream_demand,
    demand_of,
    prompt_estimate,
)
from chatprovider.domain.sse import StreamObserver, Usage, usage_of

POLICY = ReservationPolicy()
HELLO = [{"role": "user", "content": "x" * 396}]  # 400 bytes of text ("user" too): 100 tokens


@pytest.mark.parametrize(("operation", "body", "completion"), [
    (Operation.CHAT, {"messages": HELLO, "max_tokens": 50}, 50),
    (Operation.CHAT, {"messages": HELLO, "max_completion_tokens": 70, "max_tokens": 50}, 70),
    (Operation.CHAT, {"messages": HELLO, "max_tokens": 50, "n": 3}, 150),
    (Operation.CHAT, {"messages": HELLO}, 1024),
    (Operation.CHAT, {"messages": HELLO, "max_tokens": "50"}, 1024),
    (Operation.CHAT, {"messages": HELLO, "max_tokens": True}, 1024),
    (Operation.CHAT, {"messages": HELLO, "max_tokens": -5}, 1024),
    (Operation.COMPLETIONS, {"prompt": "x" * 400, "max_tokens": 16, "n": 2, "best_of": 4}, 64),
    (Operation.RESPONSES, {"input": "x" * 400, "max_output_tokens": 200}, 200),
    (Operation.RESPONSES, {"input": "x" * 400, "max_tokens": 200}, 1024),
    (Operation.MESSAGES, {"messages": HELLO, "max_tokens": 300}, 300),
    (Operation.EMBEDDINGS, {"input": "x" * 400}, 0),
])
def test_each_api_reserves_its_own_maximum(operation: Operation, body: dict,
                                           completion: int) -> None:
    assert demand_of(operation, body) == Demand(100, completion)


def test_counting_tokens_reserves_nothing() -> None:
    assert demand_of(Operation.COUNT_TOKENS, {"messages": HELLO}) == Demand(0, 0)


def test_the_prompt_estimate_is_four_bytes_a_token_of_the_prompt_text() -> None:
    body = {"model": "m" * 4000, "temperature": 0.5, "user": "u" * 4000,
            "messages": [{"role": "user", "content": "é" * 10}],  # 20 bytes + "user" 4
            "tools": [{"type": "function", "function": {"name": "f" * 8}}]}
    assert prompt_estimate(body, POLICY) == (4 + 20 + 8 + 8) // 4
    assert prompt_estimate({"input": [1, 2, 3, 4, 5]}, POLICY) == 5  # token ids
    assert prompt_estimate({"messages": "abcde"}, POLICY) == 2  # rounded up


def test_an_inline_image_counts_a_fixed_amount_not_its_size() -> None:
    image = "data:image/png;base64," + "A" * 1_000_000
    body = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": image}}]}]}
    # "user" and "image_url": 13 bytes, 4 tokens rounded up
    assert prompt_estimate(body, POLICY) == POLICY.media_tokens + 4
    assert prompt_estimate(body, ReservationPolicy(media_tokens=10)) < 20


def test_a_deeply_nested_body_is_estimated_without_recursing_for_ever() -> None:
    deep: object = "x" * 4
    for _ in range(10_000):
        deep = [deep]
    assert prompt_estimate({"messages": deep}, POLICY) == 0


def test_the_charge_is_the_reported_usage_else_the_reservation_else_nothing() -> None:
    reserved = Demand(100, 50)
    assert charged_demand(reserved, Usage(90, 7), answered=True) == Demand(90, 7)
    assert charged_demand(reserved, None, answered=True) == reserved
    assert charged_demand(reserved, None, answered=False) == Demand(0, 0)
    assert charged_demand(reserved, Usage(3, 0), answered=False) == Demand(3, 0)


# The usage each API reports, read by the relay's own extraction (domain.sse): what a settlement
# is charged with.
ANSWERS = {
    "chat": {"object": "chat.completion", "usage": {"prompt_tokens": 11, "completion_tokens": 5,
                                                    "total_tokens": 16}},
    "completions": {"object": "text_completion",
                    "usage": {"prompt_tokens": 11, "completion_tokens": 5}},
    "responses": {"object": "response", "usage": {"input_tokens": 11, "output_tokens": 5}},
    "messages": {"type": "message", "usage": {"input_tokens": 6, "cache_read_input_tokens": 5,
                                              "output_tokens": 5}},
}
STREAMS = {
    "chat": ['{"choices":[{"delta":{"content":"hi"}}]}',
             '{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":5}}', "[DONE]"],
    "completions": ['{"choices":[{"text":"hi"}]}',
                    '{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":5}}',
                    "[DONE]"],
    "responses": ['{"type":"response.output_text.delta","delta":"hi"}',
                  '{"type":"response.completed","response":{"object":"response",'
                  '"usage":{"input_tokens":11,"output_tokens":5}}}'],
    "messages": ['{"type":"message_start","message":{"usage":{"input_tokens":11,'
                 '"output_tokens":1}}}',
                 '{"type":"content_block_delta","delta":{"type":"text_delta","text":"hi"}}',
                 '{"type":"message_delta","usage":{"output_tokens":5}}',
                 '{"type":"message_stop"}'],
}


@pytest.mark.parametrize("api", list(ANSWERS))
def test_usage_is_read_from_an_answer_of_every_api(api: str) -> None:
    charged = charged_demand(Demand(500, 500), usage_of(ANSWERS[api]), answered=True)
    assert charged == Demand(11, 5)


@pytest.mark.parametrize("api", list(STREAMS))
def test_usage_is_read_from_the_stream_events_of_every_api(api: str) -> None:
    observer = StreamObserver()
    wire = "".join(f"data: {event}\n\n" for event in STREAMS[api]).encode()
    for i in range(0, len(wire), 7):  # split anywhere, as the network does
        observer.feed(wire[i:i + 7])
    assert observer.done
    charged = charged_demand(Demand(500, 500), observer.usage, answered=True)
    assert charged == Demand(11, 5)


def test_a_stream_cut_before_its_usage_is_charged_its_reservation() -> None:
    observer = StreamObserver()
    observer.feed(("data: " + json.dumps({"choices": [{"delta": {"content": "hi"}}]})
                   + "\n\n").encode())
    assert observer.usage is None
    assert charged_demand(Demand(500, 64), observer.usage, answered=True) == Demand(500, 64)


def test_a_stream_cut_short_is_charged_what_was_relayed() -> None:
    reserved = Demand(100, 50)
    # no usage yet: the prompt estimate and one token per relayed token event
    assert cut_stream_demand(reserved, None, 7) == Demand(100, 7)
    # Anthropic's message_start reported the prompt (and 1 output token) before the cut
    assert cut_stream_demand(reserved, Usage(120, 1), 9) == Demand(120, 9)
    # never more than was reserved, never less than reported
    assert cut_stream_demand(reserved, None, 80) == Demand(100, 50)
    assert cut_stream_demand(reserved, Usage(0, 30), 3) == Demand(100, 30)
