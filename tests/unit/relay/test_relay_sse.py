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
