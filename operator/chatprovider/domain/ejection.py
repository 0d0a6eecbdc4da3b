"""Passive health: when the relay's own observations of a provider take it out of routing, and
when it comes back (pure; the clock is an argument).

What one relayed attempt tells about its provider (:func:`observation_of`):

==========================  =======================================================  ==========
observed                    from                                                     counts as
==========================  =======================================================  ==========
refused, DNS, connect       the connection failed before the request was sent        hard
timeout or failure, TLS
HTTP 401, 403 (407)         the upstream refused the provider's key                  hard
HTTP 500, 502, 503, 504     the upstream answered a server error                     soft
first-byte or idle timeout  the upstream went silent (also in the middle of a        soft
cut connection, invalid     stream), broke the connection, or answered a 2xx that
JSON                        is not JSON
any other 2xx               the upstream answered                                    success
anything else               a 4xx the caller caused, 429, a redirect, an answer      (nothing)
                            over the size limit, a client that went away
==========================  =======================================================  ==========

A **hard** observation ejects at once: one refused connection or one 401 is conclusive, and
every later request would meet the same. **Soft** ones eject after
:attr:`EjectionPolicy.consecutive_failures` in a row (no success in between, each within
:attr:`EjectionPolicy.failure_window` of the previous one): a single 503 or timeout is often the
request's own (a long prompt, a model loading). A success ends the run.

An ejection ends when the operator's re-check says the provider is Ready (the provider's
``status.lastCheck`` differs from the one it had when it was ejected, and it is Ready), or after
its probation (:meth:`EjectionPolicy.probation_for`: ``probation`` seconds, doubled for each
ejection that follows a return without a successful request in between, up to
``max_probation``), so that a relay whose signal to the operator is lost does not keep a
provider out for ever. While the provider's status says it is not Ready the probation has no
effect: the status keeps it out anyway, and the ejection ends with the next Ready status.
"""

from __future__ import annotations

from collections.abc import Container, Hashable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from chatprovider.domain.openai_errors import UpstreamFailureKind
from chatprovider.domain.routing import ProviderRef, Route, RoutingError

__all__ = [
    "EjectionBook",
    "EjectionPolicy",
    "EjectionReason",
    "Ejection",
    "Observation",
    "ProviderUnavailable",
    "ReturnReason",
    "observation_of",
    "routable",
]


class EjectionReason(StrEnum):
    """Why the relay took a provider out of routing (a metric label, said in the Event)."""

    CONNECTION_REFUSED = "connection_refused"
    DNS_FAILURE = "dns_failure"
    CONNECT_TIMEOUT = "connect_timeout"
    CONNECT_FAILED = "connect_failed"
    TLS_ERROR = "tls_error"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    CONSECUTIVE_FAILURES = "consecutive_failures"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    EjectionReason.CONNECTION_REFUSED: "the provider refused the connection",
    EjectionReason.DNS_FAILURE: "the provider's host name could not be resolved",
    EjectionReason.CONNECT_TIMEOUT: "connecting to the provider timed out",
    EjectionReason.CONNECT_FAILED: "the relay could not connect to the provider",
    EjectionReason.TLS_ERROR: "TLS with the provider failed",
    EjectionReason.UNAUTHORIZED: "the upstream answered 401 to the provider's API key",
    EjectionReason.FORBIDDEN: "the upstream answered 403 to the provider's API key",
    EjectionReason.CONSECUTIVE_FAILURES: "consecutive server errors, timeouts or cut "
                                         "connections",
}


class ReturnReason(StrEnum):
    """Why an ejected provider is routed to again."""

    RECHECKED = "rechecked"
    """The operator checked it again after the ejection and found it Ready."""
    PROBATION_ENDED = "probation_ended"
    """Its probation ran out without a re-check (the operator did not answer the signal)."""


@dataclass(frozen=True, slots=True)
class Observation:
    """What one attempt said: ``success``, or a failure, ``hard`` or not, with its reason."""

    success: bool
    hard: bool = False
    reason: EjectionReason = EjectionReason.CONSECUTIVE_FAILURES


SUCCESS = Observation(success=True)
_SOFT = Observation(success=False)

_HARD_KINDS = {
    UpstreamFailureKind.REFUSED: EjectionReason.CONNECTION_REFUSED,
    UpstreamFailureKind.DNS: EjectionReason.DNS_FAILURE,
    UpstreamFailureKind.CONNECT_TIMEOUT: EjectionReason.CONNECT_TIMEOUT,
    UpstreamFailureKind.CONNECT_FAILED: EjectionReason.CONNECT_FAILED,
    UpstreamFailureKind.TLS: EjectionReason.TLS_ERROR,
}
_SOFT_KINDS = frozenset({
    UpstreamFailureKind.FIRST_BYTE_TIMEOUT, UpstreamFailureKind.IDLE_TIMEOUT,
    UpstreamFailureKind.DISCONNECTED, UpstreamFailureKind.MALFORMED,
})
_SOFT_STATUSES = frozenset({500, 502, 503, 504})


def observation_of(status: int | None, failure: str | None) -> Observation | None:
    """What an attempt that got the upstream HTTP ``status`` (None: no answer) and ended with
    ``failure`` (an :class:`UpstreamFailureKind` value, another code, or None) says about the
    provider; None when it says nothing."""
    kind = _kind(failure)
    if kind in _HARD_KINDS:
        return Observation(success=False, hard=True, reason=_HARD_KINDS[kind])
    if status in (401, 407):
        return Observation(success=False, hard=True, reason=EjectionReason.UNAUTHORIZED)
    if status == 403:
        return Observation(success=False, hard=True, reason=EjectionReason.FORBIDDEN)
    if kind in _SOFT_KINDS or status in _SOFT_STATUSES:
        return _SOFT
    if status is not None and 200 <= status < 300 and kind is None:
        return SUCCESS
    return None


def _kind(failure: str | None) -> UpstreamFailureKind | None:
    try:
        return UpstreamFailureKind(failure) if failure else None
    except ValueError:  # a stream ended by the relay or the client: not the upstream's doing
        return None


@dataclass(frozen=True)
class EjectionPolicy:
    """The numbers of passive health (seconds), with the defaults docs/relay.md states."""

    consecutive_failures: int = 5
    """Soft failures in a row that eject (Envoy's ``consecutive_5xx`` default)."""
    failure_window: float = 30.0
    """A run of soft failures is forgotten when the next one comes later than this."""
    probation: float = 30.0
    """The longest a first ejection lasts without a re-check."""
    max_probation: float = 300.0
    """The longest any ejection lasts without a re-check (the default check interval)."""
    signal_interval: float = 10.0
    """At most one re-check request per provider this often (a later one waits for it)."""

    def probation_for(self, streak: int) -> float:
        """The probation of the ``streak``-th ejection in a row (from 1)."""
        return min(self.max_probation, self.probation * 2.0 ** max(0, streak - 1))


@dataclass(frozen=True, slots=True)
class Ejection:
    """One provider out of routing: why, since when, until when at most, and the
    ``checked`` marker (its ``status.lastCheck``) it had then."""

    reason: EjectionReason
    since: float
    until: float
    checked: Hashable


@dataclass
class _Health:
    failures: int = 0
    last_failure: float = 0.0
    streak: int = 0
    ejection: Ejection | None = None


@dataclass
class EjectionBook:
    """The relay's observations of every provider, and who is out of routing now."""

    policy: EjectionPolicy = field(default_factory=EjectionPolicy)
    _health: dict[ProviderRef, _Health] = field(default_factory=dict)

    def record(self, key: ProviderRef, seen: Observation, now: float, checked: Hashable
               ) -> Ejection | None:
        """Record one observation; the new :class:`Ejection` when it ejects the provider."""
        health = self._health.get(key)
        if health is not None and health.ejection is not None:
            return None  # already out (a request that was under way when it was ejected)
        if seen.success:  # ends the run of failures, and the streak of ejections
            if health is not None:
                del self._health[key]
            return None
        if health is None:
            health = self._health[key] = _Health()
        if now - health.last_failure > self.policy.failure_window:
            health.failures = 0
        health.failures += 1
        health.last_failure = now
        if not seen.hard and health.failures < self.policy.consecutive_failures:
            return None
        health.failures = 0
        health.streak += 1
        health.ejection = Ejection(seen.reason, now, now + self.policy.probation_for(
            health.streak), checked)
        return health.ejection

    def ejected(self, key: ProviderRef) -> Ejection | None:
        """The provider's ejection, if it is out of routing."""
        health = self._health.get(key)
        return health.ejection if health is not None else None

    def out(self) -> list[ProviderRef]:
        """Every provider out of routing, sorted."""
        return sorted(k for k, h in self._health.items() if h.ejection is not None)

    def rechecked(self, key: ProviderRef, checked: Hashable, ready: bool) -> bool:
        """The provider's status changed (``checked``: its lastCheck, ``ready``: its Ready);
        True when that ends its ejection (a newer check found it Ready)."""
        ejection = self.ejected(key)
        if ejection is None or not ready or checked == ejection.checked:
            return False
        self._end(key)
        return True

    def expired(self, now: float, ready: Iterable[ProviderRef]) -> list[ProviderRef]:
        """End the ejections whose probation is over among the ``ready`` providers (the
        others are kept out by their status); the providers that return."""
        back = [k for k in ready if (e := self.ejected(k)) is not None and now >= e.until]
        for key in back:
            self._end(key)
        return sorted(back)

    def forget(self, key: ProviderRef) -> bool:
        """The provider is gone; True when it was out of routing."""
        health = self._health.pop(key, None)
        return health is not None and health.ejection is not None

    def _end(self, key: ProviderRef) -> None:
        self._health[key].ejection = None


class ProviderUnavailable(RoutingError):
    """Every provider the request could go to is out of routing (passive health)."""

    status = 503
    code = "provider_unavailable"


def routable(routes: tuple[Route, ...], out: Container[ProviderRef]) -> tuple[Route, ...]:
    """``routes`` without those to providers ``out`` of routing; raises
    :class:`ProviderUnavailable` when none is left."""
    kept = tuple(r for r in routes if r.provider not in out)
    if not kept and routes:
        names = sorted({str(r.provider) for r in routes})
        which = f"provider {names[0]} is" if len(names) == 1 else \
            f"providers {', '.join(names)} are"
        raise ProviderUnavailable(
            f"{which} out of routing after failing relayed requests; back as soon as the"
            " operator finds it healthy again")
    return kept
