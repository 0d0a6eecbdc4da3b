"""Stream observation: boundaries, first token, usage, [DONE], however the bytes are split."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chatprovider.domain.sse import StreamObserver, Usage, usage_of

STREAM = (
    b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
    b": keep-alive\n\n"
    b'data: {"choices":[{"delta":{"content":"Hel"}}]}\r\n\r\n'
    b'data: {"choices":[{"delta":{"content":"lo"}}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
    b"data: [DONE]\n\n"
)


def test_whole_stream() -> None:
    observer = StreamObserver()
    assert observer.feed(STREAM) is True
    assert observer.usage == Usage(3, 2) and observer.done and observer.at_boundary
    assert observer.events == 6


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_any_split_gives_the_same_observation(cuts: list[int]) -> None:
    observer = StreamObserver()
    points = [0, *sorted(cuts), len(STREAM)]
    firsts = [observer.feed(STREAM[a:b]) for a, b in zip(points, points[1:], strict=False)]
    assert firsts.count(True) == 1
    assert observer.usage == Usage(3, 2) and observer.done and observer.at_boundary


def test_first_token_is_not_the_role_chunk_and_tool_calls_count() -> None:
    observer = StreamObserver()
    assert not observer.feed(b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n')
    assert observer.feed(b'data: {"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}\n\n')


def test_mid_event_is_not_a_boundary() -> None:
    observer = StreamObserver()
    observer.feed(b'data: {"choices":')
    assert not observer.at_boundary
    observer.feed(b"[]}\n")
    assert not observer.at_boundary
    observer.feed(b"\n")
    assert observer.at_boundary


def test_null_usage_and_garbage_are_ignored() -> None:
    observer = StreamObserver()
    observer.feed(b'data: {"usage":null}\n\ndata: {"usage":{"prompt_tokens":"x"}}\n\n'
                  b"data: {not json, \"usage\"\n\n")
    assert observer.usage is None and not observer.done
    assert usage_of({"usage": {"prompt_tokens": 1}}) == Usage(1, 0)


# What llama-server streams (docs/conformance/llama-server.md), shortened.
RESPONSES_STREAM = (
    b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1",'
    b'"object":"response","status":"in_progress"}}\n\n'
    b'event: response.content_part.added\ndata: {"type":"response.content_part.added",'
    b'"part":{"type":"output_text","text":""}}\n\n'
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"item_id":"msg_1","delta":"Hi"}\n\n'
    b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_1",'
    b'"status":"completed","usage":{"input_tokens":12,"output_tokens":4,"total_tokens":16,'
    b'"input_tokens_details":{"cached_tokens":11}}}}\n\n'
)
MESSAGES_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","content":[],'
    b'"usage":{"input_tokens":1,"cache_read_input_tokens":11,"output_tokens":0}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},'
    b'"usage":{"output_tokens":4}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


@settings(max_examples=50, deadline=None)
@given(cuts=st.lists(st.integers(0, len(MESSAGES_STREAM)), max_size=8))
def test_responses_and_anthropic_streams_report_first_token_usage_and_their_end(
        cuts: list[int]) -> None:
    for stream, usage in ((RESPONSES_STREAM, Usage(12, 4)), (MESSAGES_STREAM, Usage(12, 4))):
        observer = StreamObserver()
        points = [0, *sorted(c for c in cuts if c <= len(stream)), len(stream)]
        firsts = [observer.feed(stream[a:b]) for a, b in zip(points, points[1:], strict=False)]
        assert firsts.count(True) == 1
        assert observer.usage == usage and observer.done and observer.at_boundary


def test_a_stream_without_its_final_event_is_not_done() -> None:
    for stream, last in ((RESPONSES_STREAM, b"event: response.completed"),
                         (MESSAGES_STREAM, b"event: message_stop")):
        observer = StreamObserver()
        observer.feed(stream[:stream.index(last)])
        assert not observer.done


def test_usage_of_every_apis_answer() -> None:
    assert usage_of({"usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}}) == \
        Usage(5, 2)
    assert usage_of({"usage": {"input_tokens": 1, "cache_read_input_tokens": 3,
                               "cache_creation_input_tokens": 2, "output_tokens": 4}}) == \
        Usage(6, 4)
    assert usage_of({"input_tokens": 12}) is None  # count_tokens: a count, not usage
    assert usage_of({"usage": {"output_tokens": True}}) is None
