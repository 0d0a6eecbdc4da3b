"""The replica's memory of which provider made each Responses answer, and where ids are read."""

from __future__ import annotations

from chatprovider.domain.routing import ProviderRef
from chatprovider.domain.sse import StreamObserver, response_id_of
from chatprovider.relay.origins import ResponseOrigins

A, B = ProviderRef("ns", "a"), ProviderRef("ns", "b")


def test_origins_are_bounded_and_forget_the_least_recently_used() -> None:
    origins = ResponseOrigins(capacity=2)
    origins.remember("resp_1", A)
    origins.remember("resp_2", B)
    assert origins.provider_of("resp_1") == A          # now the most recently used
    origins.remember("resp_3", B)
    assert origins.provider_of("resp_2") is None
    assert (origins.provider_of("resp_1"), origins.provider_of("resp_3")) == (A, B)
    assert origins.provider_of(None) is None and origins.provider_of(["resp_1"]) is None


def test_response_ids_come_from_responses_only() -> None:
    assert response_id_of({"id": "resp_1", "object": "response"}) == "resp_1"
    assert response_id_of({"type": "response.created",
                           "response": {"id": "resp_2", "object": "response"}}) == "resp_2"
    assert response_id_of({"id": "chatcmpl-1", "object": "chat.completion"}) is None
    assert response_id_of({"id": 3, "object": "response"}) is None
    observer = StreamObserver()
    observer.feed(b'event: response.created\ndata: {"type":"response.created",'
                  b'"response":{"id":"resp_9","object":"response"}}\n\n')
    observer.feed(b'event: response.created\ndata: {"type":"response.created",'
                  b'"response":{"id":"resp_other","object":"response"}}\n\n')
    assert observer.response_id == "resp_9"
