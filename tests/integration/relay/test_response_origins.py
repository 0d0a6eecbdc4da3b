"""A Responses call that continues a conversation (``previous_response_id``) with a bare model
reaches the provider that made the earlier response, on this relay replica; a caller's explicit
choice (qualified id, X-ChatProvider) still wins."""

from __future__ import annotations

import httpx
import openai
import pytest

from .conftest import provider_body

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture()
def two(relay, make_upstream):
    a, b = make_upstream("vllm"), make_upstream("vllm")
    relay.add(provider_body("team-a", "a", a.url, a.models))
    relay.add(provider_body("team-a", "b", b.url, b.models))
    return relay, a, b


def test_a_continuation_with_a_bare_model_goes_where_the_response_was_made(two) -> None:
    relay, a, b = two
    client = relay.client()
    with pytest.raises(openai.BadRequestError) as ambiguous:   # the control: a bare id alone
        client.responses.create(model=MODEL, input="hi")
    assert ambiguous.value.code == "ambiguous_model"
    first = client.responses.create(model=f"team-a/b/{MODEL}", input="hi")
    follow = client.responses.create(model=MODEL, input="and?", previous_response_id=first.id)
    assert follow.status == "completed"
    assert [r.body.get("previous_response_id") for r in b.requests] == [None, first.id]
    assert a.journal.total == 0

    # a streamed response is remembered too (from its response.created event)
    stream = client.responses.create(model=f"team-a/a/{MODEL}", input="hi", stream=True)
    [created] = [e.response.id for e in stream if e.type == "response.created"]
    client.responses.create(model=MODEL, input="and?", previous_response_id=created)
    assert [r.body.get("previous_response_id") for r in a.requests] == [None, created]

    # the caller's own choice wins over the memory
    client.responses.create(model=MODEL, input="x", previous_response_id=first.id,
                            extra_headers={"X-ChatProvider": "team-a/a"})
    client.responses.create(model=f"team-a/a/{MODEL}", input="x", previous_response_id=first.id)
    assert len(a.requests) == 4 and len(b.requests) == 2
    # an id this replica did not relay: routed by the model alone
    unknown = httpx.post(f"{relay.url}/responses", json={
        "model": MODEL, "input": "x", "previous_response_id": "resp_elsewhere"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "ambiguous_model"
