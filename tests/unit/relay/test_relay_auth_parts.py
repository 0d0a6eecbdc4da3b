"""How long the relay trusts a caller: a token's own expiry bounds its cached review, a refusal
is cached briefly; and what an open stream's guard does at its deadlines (fake clock)."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from chatprovider.domain.openai_errors import OpenAIError
from chatprovider.relay.auth import Caller, token_answer_ttl, token_expiry
from chatprovider.relay.guard import StreamCut, StreamGuard


def jwt(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def test_the_expiry_of_a_jwt_is_read_and_other_tokens_have_none() -> None:
    assert token_expiry(jwt({"exp": 1_900_000_000, "sub": "x"})) == 1_900_000_000.0
    assert token_expiry(jwt({"sub": "no exp"})) is None
    assert token_expiry(jwt({"exp": "soon"})) is None
    assert token_expiry("static-token-from-a-file") is None
    assert token_expiry("a.!!!.c") is None


def test_a_review_is_reused_at_most_until_the_token_expires() -> None:
    now = 1_000_000.0
    soon = Caller("u", expires_at=now + 5)
    assert token_answer_ttl(soon, 30.0, now) == 5.0
    assert token_answer_ttl(Caller("u", expires_at=now + 3600), 30.0, now) == 30.0
    assert token_answer_ttl(Caller("u", expires_at=now - 1), 30.0, now) == 0.0
    assert token_answer_ttl(Caller("u"), 30.0, now) == 30.0
    assert token_answer_ttl(None, 30.0, now) == 2.0  # a refusal: briefly


def run_guard(guard: StreamGuard, at: float) -> None:
    asyncio.run(guard.run(at))


def test_a_guard_without_limits_never_wants_to_run() -> None:
    guard = StreamGuard(100.0, recheck=None, interval=10.0, max_duration=0.0)
    assert guard.due() is None


def test_a_stream_is_cut_at_its_maximum_duration() -> None:
    guard = StreamGuard(100.0, recheck=None, interval=10.0, max_duration=60.0)
    assert guard.due() == 160.0
    run_guard(guard, 159.9)  # not yet
    with pytest.raises(StreamCut) as cut:
        run_guard(guard, 160.0)
    assert cut.value.error.code == "stream_timeout"


def test_a_stream_is_rechecked_every_interval_and_cut_on_a_refusal() -> None:
    answers: list[OpenAIError | None] = [None, None,
                                         OpenAIError(403, "no longer", code="access_revoked")]
    calls: list[float] = []

    async def recheck() -> None:
        calls.append(len(calls))
        answer = answers[len(calls) - 1]
        if answer is not None:
            raise answer

    guard = StreamGuard(0.0, recheck=recheck, interval=10.0, max_duration=0.0)
    assert guard.due() == 10.0
    run_guard(guard, 5.0)
    assert calls == []  # not due
    run_guard(guard, 10.0)
    assert guard.due() == 20.0
    run_guard(guard, 20.5)
    assert guard.due() == 30.5
    with pytest.raises(StreamCut) as cut:
        run_guard(guard, 30.5)
    assert cut.value.error.code == "access_revoked" and len(calls) == 3


def test_a_recheck_that_cannot_be_made_does_not_cut_the_stream() -> None:
    async def unavailable() -> None:
        raise OpenAIError(503, "the API server is away", code="auth_unavailable")

    guard = StreamGuard(0.0, recheck=unavailable, interval=10.0, max_duration=0.0)
    run_guard(guard, 10.0)  # no StreamCut
    assert guard.due() == 20.0


def test_an_expired_token_on_recheck_cuts_the_stream() -> None:
    async def expired() -> None:
        raise OpenAIError(401, "the bearer token is not valid", code="invalid_api_key")

    guard = StreamGuard(0.0, recheck=expired, interval=1.0, max_duration=0.0)
    with pytest.raises(StreamCut) as cut:
        run_guard(guard, 1.0)
    assert cut.value.error.status == 401
