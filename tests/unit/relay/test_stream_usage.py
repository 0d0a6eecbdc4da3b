"""Asking a chat stream for its usage and handing the caller exactly the stream it asked for."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from chatprovider.domain.apis import Operation
from chatprovider.domain.request_body import parse_body
from chatprovider.domain.sse import StreamObserver
from chatprovider.domain.stream_usage import UsageFilter, asks_usage, request_usage

# A llama-server chat stream with stream_options.include_usage (as it really sends it).
CHUNK = ('data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":"%s"}}],'
         '"id":"c1","object":"chat.completion.chunk"}\n\n')
USAGE = ('data: {"choices":[],"id":"c1","object":"chat.completion.chunk","usage":'
         '{"completion_tokens":3,"prompt_tokens":10,"total_tokens":13}}\n\n')
STREAM = (CHUNK % "Hel" + CHUNK % "lo" + CHUNK % "!" + USAGE + "data: [DONE]\n\n").encode()
WITHOUT = (CHUNK % "Hel" + CHUNK % "lo" + CHUNK % "!" + "data: [DONE]\n\n").encode()


def _filter(chunks: list[bytes]) -> bytes:
    f = UsageFilter()
    return b"".join(f.feed(c) for c in chunks) + f.flush()


def test_the_usage_chunk_is_dropped_and_every_other_event_passes_byte_for_byte() -> None:
    assert _filter([STREAM]) == WITHOUT


@given(st.lists(st.integers(1, len(STREAM) - 1), unique=True, max_size=12))
def test_any_split_into_chunks_gives_the_same_stream(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    assert _filter([STREAM[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]) == WITHOUT


def test_only_whole_events_are_forwarded() -> None:
    f = UsageFilter()
    assert f.feed(STREAM[:20]) == b""
    assert f.feed(STREAM[20:]) == WITHOUT


def test_a_usage_member_in_another_chunk_is_removed() -> None:
    # OpenAI and vLLM send "usage": null in every chunk with the option; some servers put the
    # count on the last chunk that has choices (llama-server's completions).
    null = b'data: {"choices":[{"delta":{"content":"a"}}],"usage":null}\n\n'
    last = (b'data: {"choices":[{"text":"","finish_reason":"length"}],'
            b'"usage":{"prompt_tokens":2}}\n\n')
    out = _filter([null, last])
    events = [json.loads(e[6:]) for e in out.split(b"\n\n") if e]
    assert events == [{"choices": [{"delta": {"content": "a"}}]},
                      {"choices": [{"text": "", "finish_reason": "length"}]}]


def test_the_observer_still_sees_the_usage_the_caller_does_not() -> None:
    observer = StreamObserver()
    observer.feed(STREAM)
    assert observer.usage is not None and observer.usage.completion_tokens == 3
    assert observer.token_events == 3


def test_a_stream_that_asks_for_nothing_is_asked_for_its_usage() -> None:
    body = parse_body(b'{"model": "m", "stream": true, "messages": [],'
                      b' "stream_options": {"x": 1}}')
    asked = request_usage(Operation.CHAT, body)
    assert asked is not None
    sent = json.loads(asked.with_model("up"))
    assert sent["stream_options"] == {"x": 1, "include_usage": True}
    assert sent["model"] == "up" and sent["messages"] == []


def test_nothing_changes_when_the_caller_asked_or_nothing_streams_or_usage_is_always_sent() -> None:
    asked = parse_body(b'{"model": "m", "stream": true, "stream_options": {"include_usage": true}}')
    assert asks_usage(asked.members)
    assert request_usage(Operation.CHAT, asked) is None
    assert request_usage(Operation.CHAT, parse_body(b'{"model": "m"}')) is None
    streamed = parse_body(b'{"model": "m", "stream": true}')
    assert request_usage(Operation.COMPLETIONS, streamed) is not None
    for operation in (Operation.RESPONSES, Operation.MESSAGES):
        assert request_usage(operation, streamed) is None
