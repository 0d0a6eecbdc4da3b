"""The client's body reaches the upstream byte for byte, except the model id."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatprovider.domain.openai_errors import OpenAIError
from chatprovider.domain.request_body import parse_body


def test_model_is_rewritten_in_place_and_everything_else_is_untouched() -> None:
    raw = (b'{ "messages":[{"role":"user","content":"h\\u00e9 \xc3\xa9"}],\n "model" : "ns/p/m:1",'
           b' "temperature":1.50, "x_unknown":{"model":"inner"}, "stream":false,'
           b' "tools":[{"type":"function","function":{"name":"f"}}]}')
    body = parse_body(raw)
    assert body.model == "ns/p/m:1" and body.stream is False
    out = body.with_model("meta/llama:8b")
    assert out == raw.replace(b'"ns/p/m:1"', b'"meta/llama:8b"')


def test_escaped_model_value_and_unicode() -> None:
    raw = '{"model":"ns\\/p\\/m\\u00e9","stream":true,"stream_options":{"include_usage":true}}'
    body = parse_body(raw.encode())
    assert body.model == "ns/p/mé" and body.stream is True
    assert json.loads(body.with_model("mé\"x")) == {
        "model": "mé\"x", "stream": True, "stream_options": {"include_usage": True}}


def test_duplicate_model_keys_are_reserialised_with_the_last_one_winning_like_json() -> None:
    body = parse_body(b'{"model":"a","model":"ns/p/b","n":2}')
    assert body.model == "ns/p/b"
    assert json.loads(body.with_model("b")) == {"model": "b", "n": 2}


@pytest.mark.parametrize("raw, param", [
    (b"", None), (b"[]", None), (b'"x"', None), (b"{", None), (b'{"model":"a",}', None),
    (b'{"model":"a"} x', None), (b'{"model":1}', "model"), (b'{"model":""}', "model"),
    (b"{}", "model"), (b'{"model":"a","stream":"yes"}', "stream"), (b"\xff\xfe", None),
    (b'{"model" "a"}', None), (b'{model:"a"}', None), (b"[" * 100000, None),
])
def test_bad_bodies_are_400(raw: bytes, param: str | None) -> None:
    with pytest.raises(OpenAIError) as info:
        parse_body(raw)
    assert info.value.status == 400 and info.value.param == param


def test_null_stream_is_not_streaming() -> None:
    assert parse_body(b'{"model":"a","stream":null}').stream is False


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=30, deadline=None)  # 0.1-0.2 s of CPU; 50 came near the 0.5 s budget
@given(members=st.dictionaries(st.text(max_size=8), _json, max_size=5),
       model=st.text(min_size=1), new=st.text(min_size=1), indent=st.sampled_from([None, 1]))
def test_rewriting_changes_only_the_model(members: dict, model: str, new: str,
                                          indent: int | None) -> None:
    members = {**members, "model": model}
    members.pop("stream", None)
    raw = json.dumps(members, indent=indent, ensure_ascii=False).encode()
    body = parse_body(raw)
    assert body.model == model
    assert json.loads(body.with_model(new)) == {**members, "model": new}
