"""API keys: 401 in the OpenAI envelope, rotation at runtime, no key for keyless flavours."""

from __future__ import annotations

import pytest
from devserver_helpers import KEY, chat_body

from chatprovider_tools.devserver import DevServer


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}],
    ids=["missing", "wrong", "not-bearer"],
)
def test_missing_or_wrong_key_is_401_with_the_openai_envelope(vllm, client, headers):
    for answer in (client.get(f"{vllm.url}/models", headers=headers),
                   client.post(f"{vllm.url}/chat/completions", json=chat_body(),
                               headers=headers)):
        assert answer.status_code == 401
        error = answer.json()["error"]
        assert set(error) >= {"message", "type", "code"}
        assert error["code"] == "invalid_api_key"


def test_rotation_takes_effect_on_the_next_request(vllm, client, auth):
    assert client.get(f"{vllm.url}/models", headers=auth).status_code == 200
    vllm.set_api_keys({"sk-new", KEY})  # overlap window: both keys work
    assert vllm.api_keys == {"sk-new", KEY}
    assert client.get(f"{vllm.url}/models", headers=auth).status_code == 200
    vllm.set_api_keys({"sk-new"})
    assert client.get(f"{vllm.url}/models", headers=auth).status_code == 401
    new = {"Authorization": "Bearer sk-new"}
    assert client.get(f"{vllm.url}/models", headers=new).status_code == 200
    assert [r.api_key for r in vllm.requests] == [KEY, KEY, KEY, "sk-new"]


def test_no_keys_means_no_auth_and_keys_can_be_turned_on(client):
    with DevServer("ollama") as srv:
        assert client.get(f"{srv.url}/models").status_code == 200
        assert client.get(f"{srv.url}/models",
                          headers={"Authorization": "Bearer anything"}).status_code == 200
        srv.set_api_keys(["k"])
        assert client.get(f"{srv.url}/models").status_code == 401
