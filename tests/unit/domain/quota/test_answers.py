"""What callers under a quota see: rate-limit headers and the 429s."""

from __future__ import annotations

import json

import pytest
from tests.unit.domain.quota.helpers import ALICE, PROVIDER, quota

from chatprovider.domain.quota.answers import (
    RATE_LIMIT_HEADERS,
    rate_limit_headers,
    refusal,
    store_unavailable,
)
from chatprovider.domain.quota.demand import Demand
from chatprovider.domain.quota.ledger import Outcome, admit, reserve
from chatprovider.domain.quota.limits import applicable_limits

NOW = 1_780_000_020.0 + 15.25  # a minute starts at 1_780_000_020: 44.75 s before it ends


DEMAND = Demand(100, 100)


def _reservation(demand: Demand = DEMAND, **limits: int):
    return reserve(applicable_limits([quota(limits=limits)], ALICE, PROVIDER, {}), demand, NOW,
                   "lease")


def test_an_admitted_answer_tells_the_tightest_request_and_token_limits() -> None:
    reservation = _reservation(requestsPerMinute=10, tokensPerMinute=1000,
                               tokensPerDay=100_000)
    outcome = admit([3, 100, 99_500], reservation.charges)
    headers = rate_limit_headers(reservation, outcome, NOW)
    assert set(headers) == set(RATE_LIMIT_HEADERS)
    assert headers["x-ratelimit-limit-requests"] == "10"
    assert headers["x-ratelimit-remaining-requests"] == "6"
    assert headers["x-ratelimit-reset-requests"] == "44.75s"
    # the day budget has less room left (300) than the minute (700): it is the one reported
    assert headers["x-ratelimit-limit-tokens"] == "100000"
    assert headers["x-ratelimit-remaining-tokens"] == "300"
    assert headers["x-ratelimit-reset-tokens"].endswith("m44.75s")


def test_without_a_request_limit_only_token_headers_are_sent() -> None:
    reservation = _reservation(tokensPerMinute=1000)
    headers = rate_limit_headers(reservation, admit([0], reservation.charges), NOW)
    assert set(headers) == {"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
                            "x-ratelimit-reset-tokens"}
    assert headers["x-ratelimit-remaining-tokens"] == "800"


def test_remaining_is_never_negative_after_an_overshoot() -> None:
    reservation = _reservation(tokensPerMinute=1000)
    outcome = Outcome(True, (1300,))
    assert rate_limit_headers(reservation, outcome, NOW)["x-ratelimit-remaining-tokens"] == "0"


def _body(error) -> dict:
    return json.loads(error.body())["error"]


def test_a_full_minute_is_rate_limit_exceeded_with_retry_after() -> None:
    reservation = _reservation(requestsPerMinute=10, tokensPerMinute=1000)
    outcome = admit([4, 900], reservation.charges)
    error = refusal(reservation, outcome, NOW)
    assert error.status == 429
    assert _body(error)["code"] == "rate_limit_exceeded"
    assert _body(error)["type"] == "rate_limit_error"
    assert "quota llm/q (User:alice) on tokens per minute" in error.message
    assert "limit 1000, used 900, requested 200" in error.message
    assert error.headers["retry-after"] == "45"
    assert error.headers["retry-after-ms"] == "44750"
    assert error.headers["x-ratelimit-remaining-requests"] == "6"
    assert error.headers["x-ratelimit-remaining-tokens"] == "100"


def test_a_spent_day_or_month_budget_is_insufficient_quota() -> None:
    for window in ("tokensPerDay", "tokensPerMonth"):
        reservation = _reservation(**{window: 1000})
        error = refusal(reservation, admit([950], reservation.charges), NOW)
        assert _body(error)["code"] == "insufficient_quota"
        assert "resets in" in error.message
        assert int(error.headers["retry-after"]) > 45


def test_a_request_larger_than_the_limit_is_told_so_and_not_to_retry() -> None:
    reservation = _reservation(Demand(300, 4096), tokensPerMinute=1000)
    error = refusal(reservation, admit([0], reservation.charges), NOW)
    assert "Request too large" in error.message and "max_tokens" in error.message
    assert "4096" in error.message
    assert "retry-after" not in error.headers
    assert _body(error)["code"] == "rate_limit_exceeded"


def test_a_full_concurrency_limit_asks_to_retry_in_a_second() -> None:
    reservation = _reservation(concurrentRequests=2)
    error = refusal(reservation, admit([2], reservation.charges), NOW)
    assert error.headers["retry-after"] == "1"
    assert "in flight" in error.message


def test_refusal_is_only_for_refused_outcomes() -> None:
    reservation = _reservation(requestsPerMinute=1)
    with pytest.raises(ValueError):
        refusal(reservation, admit([0], reservation.charges), NOW)


def test_an_unavailable_store_is_a_503_to_retry() -> None:
    error = store_unavailable()
    assert (error.status, error.code, error.headers["retry-after"]) == (503, "quota_unavailable",
                                                                         "1")
