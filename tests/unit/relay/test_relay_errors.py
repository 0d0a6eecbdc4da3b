"""Every failure is answered in the OpenAI envelope, with the status a client can act on."""

from __future__ import annotations

import json

import pytest

from chatprovider.domain import routing
from chatprovider.domain.openai_errors import (
    OpenAIError,
    UpstreamFailure,
    UpstreamFailureKind,
    error_type,
    from_routing,
    is_envelope,
    upstream_error,
)


def envelope(error: OpenAIError) -> dict:
    body = json.loads(error.body())
    assert set(body) == {"error"}
    assert set(body["error"]) >= {"message", "type", "code", "param"}
    return body["error"]


def test_openai_shaped_upstream_errors_pass_through_byte_for_byte() -> None:
    raw = b'{"error":{"message":"model x not found","type":"NotFoundError","code":404,"x":1}}'
    error = upstream_error(404, raw, "ns/p", {"x-request-id": "r"})
    assert error.status == 404 and error.body() == raw and error.headers == {"x-request-id": "r"}


def test_other_upstream_errors_are_wrapped_with_their_status() -> None:
    error = upstream_error(400, b'{"detail":"context too long"}', "ns/p")
    assert error.status == 400
    assert envelope(error)["message"] == "the provider answered HTTP 400: context too long (ns/p)"
    error = upstream_error(503, b"<html>bad gateway</html>", "ns/p", {"Retry-After": "2"})
    assert error.status == 503 and error.headers == {"Retry-After": "2"}
    assert envelope(error)["type"] == "upstream_error"


def test_structured_details_that_may_echo_the_request_are_left_out() -> None:
    body = b'{"detail":[{"loc":["body","messages"],"input":"my secret prompt"}]}'
    error = upstream_error(422, body, "ns/p")
    assert "secret" not in error.message and error.status == 422


def test_upstream_auth_rejection_is_a_bad_gateway_without_the_upstream_message() -> None:
    raw = b'{"error":{"message":"Incorrect API key provided: sk-abc***xyz","type":"x"}}'
    for status in (401, 403):
        error = upstream_error(status, raw, "ns/p")
        assert error.status == 502 and "sk-" not in error.body().decode()
        assert envelope(error)["code"] == "upstream_auth_rejected"


def test_redirects_are_refused() -> None:
    assert upstream_error(302, b"", "ns/p").status == 502


@pytest.mark.parametrize("kind, status, before_send", [
    (UpstreamFailureKind.REFUSED, 502, True), (UpstreamFailureKind.DNS, 502, True),
    (UpstreamFailureKind.EGRESS_DENIED, 502, True),
    (UpstreamFailureKind.CONNECT_TIMEOUT, 504, True),
    (UpstreamFailureKind.FIRST_BYTE_TIMEOUT, 504, False),
    (UpstreamFailureKind.IDLE_TIMEOUT, 504, False),
    (UpstreamFailureKind.DISCONNECTED, 502, False), (UpstreamFailureKind.MALFORMED, 502, False),
])
def test_upstream_failures(kind: UpstreamFailureKind, status: int, before_send: bool) -> None:
    failure = UpstreamFailure(kind, "ns/p")
    assert failure.status == status and kind.before_send is before_send
    assert envelope(failure)["code"] == kind.value and "ns/p" in failure.message
    event = failure.sse_event()
    assert event.startswith(b"data: {\"error\"") and event.endswith(b"\n\n")


def test_routing_errors_name_their_candidates() -> None:
    error = from_routing(routing.AmbiguousModel("ambiguous", ("a/b/m", "c/d/m")))
    assert error.status == 400 and "a/b/m, c/d/m" in error.message
    assert envelope(error) == {"message": error.message, "type": "invalid_request_error",
                               "code": "ambiguous_model", "param": "model"}
    assert from_routing(routing.ProviderNotReady("x")).headers == {"Retry-After": "5"}
    assert from_routing(routing.ProviderForbidden("x")).type == "permission_error"


def test_types_by_status() -> None:
    assert error_type(401) == "authentication_error"
    assert error_type(429) == "rate_limit_error"
    assert error_type(504) == "upstream_error"
    assert error_type(500) == "server_error"
    assert not is_envelope({"error": "text"}) and is_envelope({"error": {"message": "m"}})


def test_a_passed_through_envelope_keeps_its_content_type_a_wrapped_one_does_not() -> None:
    raw = b'{"error":{"message":"no","type":"x"}}'
    json_type = "application/json; charset=utf-8"
    kept = upstream_error(400, raw, "ns/p", {"x-request-id": "r"}, json_type)
    assert kept.headers == {"x-request-id": "r", "Content-Type": json_type}
    wrapped = upstream_error(400, b"<html>no</html>", "ns/p", None, "text/html")
    assert "Content-Type" not in wrapped.headers
