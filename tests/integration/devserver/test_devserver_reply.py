"""The planned reply: deterministic text, truncation, tool calls, token counts (pure)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from chatprovider_tools.devserver.reply import (
    count_prompt_tokens,
    plan_reply,
    reply_pieces,
    split_evenly,
    tool_arguments,
)


def test_reply_mentions_the_model_in_its_first_piece():
    pieces = reply_pieces("llama3:8b", 8)
    assert pieces[0] == "Hello from llama3:8b"
    assert "".join(pieces) == "Hello from llama3:8b! This is a deterministic reply."


def test_fewer_frames_keep_the_whole_sentence():
    assert "".join(reply_pieces("m", 2)) == "Hello from m! This is a deterministic reply."
    assert reply_pieces("m", 1) == ("Hello from m! This is a deterministic reply.",)


@given(model=st.text(min_size=1, max_size=40), frames=st.integers(min_value=-3, max_value=300))
def test_reply_has_exactly_the_requested_frames(model, frames):
    pieces = reply_pieces(model, frames)
    assert len(pieces) == max(1, frames)
    assert all(pieces)
    assert reply_pieces(model, frames) == pieces  # deterministic


@given(items=st.lists(st.text(max_size=3), min_size=1, max_size=50), data=st.data())
def test_split_evenly_keeps_order_and_content(items, data):
    parts = data.draw(st.integers(min_value=1, max_value=len(items)))
    assert "".join(split_evenly(items, parts)) == "".join(items)
    assert len(split_evenly(items, parts)) == parts


def test_max_tokens_truncates_with_finish_reason_length():
    reply = plan_reply({"model": "m", "messages": [], "max_tokens": 1}, 8)
    assert reply.pieces == ("Hello from m",)
    assert reply.finish_reason == "length"
    assert reply.usage()["completion_tokens"] == 1


def test_max_completion_tokens_wins_and_large_limits_do_not_truncate():
    assert plan_reply({"model": "m", "max_completion_tokens": 2, "max_tokens": 50}, 8
                      ).completion_tokens == 2
    reply = plan_reply({"model": "m", "max_tokens": 100}, 8)
    assert reply.finish_reason == "stop" and reply.completion_tokens == 8


def test_prompt_tokens_count_words_and_messages():
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "one two three"}]}]
    assert count_prompt_tokens(messages) == 3 + 2 + 3 + 3
    assert count_prompt_tokens("a b") == 2
    assert count_prompt_tokens(None) == 0


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": ["integer", "null"]},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}


def test_tools_give_a_call_of_the_first_tool_with_schema_arguments():
    reply = plan_reply({"model": "m", "messages": [], "tools": [WEATHER, TIME]}, 4)
    assert reply.finish_reason == "tool_calls"
    assert reply.content is None
    assert reply.tool_call is not None and reply.tool_call.name == "get_weather"
    assert json.loads(reply.tool_call.arguments) == {"city": "example", "unit": "celsius"}
    assert "".join(reply.pieces) == reply.tool_call.arguments
    assert len(reply.pieces) == 4


def test_tool_choice_selects_or_disables_the_call():
    named = {"type": "function", "function": {"name": "get_time"}}
    reply = plan_reply({"model": "m", "tools": [WEATHER, TIME], "tool_choice": named}, 4)
    assert reply.tool_call is not None and reply.tool_call.name == "get_time"
    assert reply.tool_call.arguments == "{}"
    assert plan_reply({"model": "m", "tools": [WEATHER], "tool_choice": "none"}, 4
                      ).tool_call is None


def test_tool_arguments_without_required_use_every_property():
    schema = {"properties": {"n": {"type": "number"}, "flag": {"type": "boolean"}}}
    assert tool_arguments(schema) == {"n": 1.5, "flag": True}
    assert tool_arguments(None) == {}
