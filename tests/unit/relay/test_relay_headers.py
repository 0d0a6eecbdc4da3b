"""Credentials and hop-by-hop headers never cross the relay; the provider's key is injected."""

from __future__ import annotations

from chatprovider.domain.apis import Api
from chatprovider.domain.headers import caller_authorization, downstream_headers, upstream_headers


def names(headers: list[tuple[str, str]]) -> set[str]:
    return {n.lower() for n, _ in headers}


def test_client_credentials_and_hop_by_hop_headers_are_dropped() -> None:
    client = [
        ("Authorization", "Bearer caller-token"), ("Cookie", "s=1"), ("X-Api-Key", "k"),
        ("Proxy-Authorization", "Basic x"), ("Connection", "keep-alive, X-Secret-Hop"),
        ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Trailer", "x"),
        ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"), ("Host", "relay"),
        ("Content-Length", "12"), ("X-Secret-Hop", "1"), ("Api-Key", "azure"),
        ("OpenAI-Organization", "org"), ("X-ChatProvider", "ns/p"),
        ("Accept-Encoding", "gzip"), ("Content-Type", "application/json; charset=utf-8"),
        ("User-Agent", "OpenAI/Python"), ("X-Request-Id", "abc"), ("traceparent", "00-1-2-01"),
    ]
    out = upstream_headers(client, api_key="provider-key", extra=[("OpenAI-Organization", "o"),
                                                                    ("X-Team", "blue")])
    assert ("Authorization", "Bearer provider-key") in out
    assert [v for n, v in out if n.lower() == "authorization"] == ["Bearer provider-key"]
    assert "caller-token" not in repr(out)
    for dropped in ("cookie", "x-api-key", "proxy-authorization", "connection", "keep-alive",
                    "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
                    "x-secret-hop", "api-key", "x-chatprovider"):
        assert dropped not in names(out), dropped
    assert ("User-Agent", "OpenAI/Python") in out and ("traceparent", "00-1-2-01") in out
    assert ("X-Team", "blue") in out and ("OpenAI-Organization", "o") in out
    assert ("Accept-Encoding", "identity") in out and ("Content-Type", "application/json") in out


def test_no_key_means_no_authorization_header() -> None:
    out = upstream_headers([("Authorization", "Bearer t")], api_key=None)
    assert "authorization" not in names(out)


def test_spec_headers_cannot_smuggle_credentials() -> None:
    out = upstream_headers([], api_key=None, extra=[("Authorization", "Bearer x"),
                                                    ("Cookie", "y")])
    assert names(out) == {"content-type", "accept-encoding"}


def test_downstream_keeps_rate_limit_headers_and_drops_framing_and_cookies() -> None:
    out = downstream_headers([
        ("Content-Type", "text/event-stream"), ("Retry-After", "3"),
        ("x-ratelimit-remaining-requests", "1"), ("Set-Cookie", "a=b"),
        ("Transfer-Encoding", "chunked"), ("Content-Length", "3"), ("Connection", "close"),
        ("Server", "uvicorn"), ("WWW-Authenticate", "Bearer"), ("x-request-id", "r"),
    ])
    assert names(out) == {"content-type", "retry-after", "x-ratelimit-remaining-requests",
                          "x-request-id"}


def test_anthropic_routes_send_the_providers_key_in_both_headers_and_never_the_callers() -> None:
    client = [("x-api-key", "caller-token"), ("anthropic-version", "2023-06-01")]
    out = upstream_headers(client, api_key="provider-key", api=Api.ANTHROPIC)
    assert [(n, v) for n, v in out if n.lower() in ("authorization", "x-api-key")] == [
        ("Authorization", "Bearer provider-key"), ("x-api-key", "provider-key")]
    assert ("anthropic-version", "2023-06-01") in out and "caller-token" not in repr(out)
    assert "x-api-key" not in names(upstream_headers(client, api_key="k", api=Api.OPENAI))
    assert names(upstream_headers(client, api_key=None, api=Api.ANTHROPIC)) == {
        "anthropic-version", "content-type", "accept-encoding"}


def test_the_callers_token_comes_from_x_api_key_only_without_an_authorization_header() -> None:
    assert caller_authorization("Bearer a", None) == "Bearer a"
    assert caller_authorization("Bearer a", "b") == "Bearer a"
    assert caller_authorization("Basic eA==", "b") == "Basic eA=="  # refused, not replaced
    assert caller_authorization(None, " b ") == "Bearer b"
    assert caller_authorization(None, "  ") is None
    assert caller_authorization(None, None) is None
