"""Passive health's policy: which observations take a provider out of routing, for how long,
and what brings it back (a fake clock: times are plain numbers)."""

from __future__ import annotations

import pytest

from chatprovider.domain.ejection import (
    EjectionBook,
    EjectionPolicy,
    EjectionReason,
    ProviderUnavailable,
    observation_of,
    routable,
)
from chatprovider.domain.openai_errors import UpstreamFailureKind as K
from chatprovider.domain.routing import ProviderRef, Route

A, B = ProviderRef("team-a", "vllm"), ProviderRef("team-b", "ollama")
OK = observation_of(200, None)
ERROR_503 = observation_of(503, None)
REFUSED = observation_of(None, K.REFUSED.value)


@pytest.mark.parametrize(("status", "failure", "reason"), [
    (None, K.REFUSED.value, EjectionReason.CONNECTION_REFUSED),
    (None, K.DNS.value, EjectionReason.DNS_FAILURE),
    (None, K.CONNECT_TIMEOUT.value, EjectionReason.CONNECT_TIMEOUT),
    (None, K.CONNECT_FAILED.value, EjectionReason.CONNECT_FAILED),
    (None, K.TLS.value, EjectionReason.TLS_ERROR),
    (401, K.AUTH_REJECTED.value, EjectionReason.UNAUTHORIZED),
    (403, K.AUTH_REJECTED.value, EjectionReason.FORBIDDEN),
])
def test_hard_observations_eject_at_once(status, failure, reason) -> None:
    seen = observation_of(status, failure)
    assert seen is not None and seen.hard and seen.reason is reason
    book = EjectionBook()
    ejection = book.record(A, seen, 100.0, checked="t0")
    assert ejection is not None and ejection.reason is reason
    assert book.ejected(A) == ejection and book.out() == [A]
    assert book.ejected(B) is None


@pytest.mark.parametrize(("status", "failure"), [
    (500, None), (502, None), (503, None), (504, None),
    (None, K.FIRST_BYTE_TIMEOUT.value), (200, K.IDLE_TIMEOUT.value),
    (200, K.DISCONNECTED.value), (200, K.MALFORMED.value),
])
def test_soft_observations_need_a_run(status, failure) -> None:
    seen = observation_of(status, failure)
    assert seen is not None and not seen.hard and not seen.success
    book = EjectionBook(EjectionPolicy(consecutive_failures=3))
    assert book.record(A, seen, 1.0, None) is None
    assert book.record(A, seen, 2.0, None) is None
    ejection = book.record(A, seen, 3.0, None)
    assert ejection is not None and ejection.reason is EjectionReason.CONSECUTIVE_FAILURES


@pytest.mark.parametrize(("status", "failure"), [
    (400, None), (404, None), (422, None), (429, None), (501, None), (302, None),
    (None, K.EGRESS_DENIED.value), (None, K.PROXY.value), (200, K.TOO_LARGE.value),
    (None, None),  # no answer, no failure: the caller went away before the headers
])
def test_what_is_not_the_providers_health_says_nothing(status, failure) -> None:
    assert observation_of(status, failure) is None


@pytest.mark.parametrize("code", ["client_disconnected", "access_revoked", "stream_timeout"])
def test_a_stream_the_relay_or_the_client_ended_is_a_success(code) -> None:
    assert observation_of(200, code) == OK and OK is not None and OK.success


def test_a_success_ends_a_run_of_soft_failures() -> None:
    book = EjectionBook(EjectionPolicy(consecutive_failures=3))
    for t in (1.0, 2.0):
        assert book.record(A, ERROR_503, t, None) is None
    book.record(A, OK, 3.0, None)
    assert book.record(A, ERROR_503, 4.0, None) is None
    assert book.record(A, ERROR_503, 5.0, None) is None
    assert book.record(A, ERROR_503, 6.0, None) is not None


def test_a_run_is_forgotten_after_the_window() -> None:
    book = EjectionBook(EjectionPolicy(consecutive_failures=2, failure_window=30.0))
    assert book.record(A, ERROR_503, 0.0, None) is None
    assert book.record(A, ERROR_503, 31.0, None) is None  # a run of 1 again
    assert book.record(A, ERROR_503, 60.0, None) is not None


def test_providers_are_judged_apart() -> None:
    book = EjectionBook(EjectionPolicy(consecutive_failures=2))
    book.record(A, ERROR_503, 0.0, None)
    book.record(B, ERROR_503, 0.5, None)
    assert book.out() == []
    book.record(B, ERROR_503, 1.0, None)
    assert book.out() == [B]


def test_a_newer_ready_check_ends_the_ejection() -> None:
    book = EjectionBook()
    book.record(A, REFUSED, 0.0, checked="check-1")
    assert not book.rechecked(A, "check-1", ready=True)   # the relay's own patch, say
    assert not book.rechecked(A, "check-2", ready=False)  # the re-check failed: still out
    assert book.out() == [A]
    assert book.rechecked(A, "check-3", ready=True)
    assert book.out() == [] and book.ejected(A) is None


def test_probation_ends_an_ejection_only_while_the_status_says_ready() -> None:
    book = EjectionBook(EjectionPolicy(probation=30.0))
    ejection = book.record(A, REFUSED, 10.0, None)
    assert ejection is not None and ejection.until == 40.0
    assert book.expired(39.9, ready=[A]) == []
    assert book.expired(40.0, ready=[]) == []       # the status keeps it out anyway
    assert book.out() == [A]
    assert book.expired(40.0, ready=[A]) == [A]
    assert book.out() == []


def test_probation_doubles_for_repeated_ejections_without_a_success() -> None:
    policy = EjectionPolicy(probation=30.0, max_probation=100.0)
    book = EjectionBook(policy)
    durations = []
    now = 0.0
    for _ in range(4):
        ejection = book.record(A, REFUSED, now, None)
        assert ejection is not None
        durations.append(ejection.until - ejection.since)
        now = ejection.until
        assert book.expired(now, ready=[A]) == [A]
    assert durations == [30.0, 60.0, 100.0, 100.0]
    book.record(A, OK, now, None)  # a success after the return: the next one is a first
    ejection = book.record(A, REFUSED, now + 1, None)
    assert ejection is not None and ejection.until - ejection.since == 30.0


def test_observations_while_ejected_change_nothing() -> None:
    book = EjectionBook()
    first = book.record(A, REFUSED, 0.0, "c")
    assert book.record(A, REFUSED, 1.0, "c") is None  # a request under way at the ejection
    assert book.record(A, OK, 2.0, "c") is None
    assert book.ejected(A) == first


def test_a_deleted_provider_is_forgotten() -> None:
    book = EjectionBook()
    book.record(A, REFUSED, 0.0, None)
    assert book.forget(A) is True
    assert book.out() == [] and book.forget(A) is False


def test_routable_drops_ejected_providers_and_keeps_the_order() -> None:
    routes = (Route(A, "m"), Route(B, "m"))
    assert routable(routes, {A}) == (Route(B, "m"),)
    assert routable(routes, set()) == routes
    assert routable((), {A}) == ()


def test_a_request_only_ejected_providers_could_take_is_a_503() -> None:
    with pytest.raises(ProviderUnavailable) as info:
        routable((Route(A, "m"),), {A})
    assert info.value.status == 503 and info.value.code == "provider_unavailable"
    assert "team-a/vllm is out of routing" in info.value.message
    with pytest.raises(ProviderUnavailable, match="providers team-a/vllm, team-b/ollama are"):
        routable((Route(A, "m"), Route(B, "m")), {A, B})
