"""What a caller under a quota is told: OpenAI's rate-limit headers and the 429 answers (pure).

Every answer to a request that a quota governs carries OpenAI's headers, for the requests and
for the tokens, each from the applicable limit with the least room left (the one that refuses
first; when two have the same room, the one that resets later):

==================================  ==========================================================
``x-ratelimit-limit-requests``      that request limit's capacity
``x-ratelimit-remaining-requests``  its room after this request was admitted (never negative)
``x-ratelimit-reset-requests``      until its window ends, as Go prints a duration (``6m0s``)
``x-ratelimit-*-tokens``            the same for the token limits (per minute, day or month)
==================================  ==========================================================

A refusal is a 429 in the OpenAI envelope, ``code`` telling which kind:

* ``rate_limit_exceeded``: a per-minute limit or the concurrency limit is full; ``Retry-After``
  (seconds, rounded up) and ``retry-after-ms`` say when the window turns (1 s for concurrency).
  A request whose reservation alone exceeds a limit can never be admitted: it is refused in
  the same way, saying so, without ``Retry-After``;
* ``insufficient_quota``: a day or month budget is spent; ``Retry-After`` says when it resets.

The ``type`` is ``rate_limit_error``, as for every 429 of the relay. Messages name the quota, the
limit and the counts, never a request's content.
"""

from __future__ import annotations

import math

from chatprovider.domain.openai_errors import OpenAIError
from chatprovider.domain.quota.ledger import Outcome, Reservation
from chatprovider.domain.quota.limits import Limit, Metric
from chatprovider.domain.quota.windows import go_duration

__all__ = ["RATE_LIMIT_HEADERS", "rate_limit_headers", "refusal", "store_unavailable"]

RATE_LIMIT_HEADERS = tuple(f"x-ratelimit-{what}-{kind}" for kind in ("requests", "tokens")
                           for what in ("limit", "remaining", "reset"))


_KIND = {Metric.REQUESTS: "requests", Metric.TOKENS: "tokens", Metric.PROMPT_TOKENS: "tokens",
         Metric.COMPLETION_TOKENS: "tokens"}
"""Which headers a metric's limits report in (the concurrency limit: none)."""


def rate_limit_headers(reservation: Reservation, outcome: Outcome, now: float) -> dict[str, str]:
    """The ``x-ratelimit-*`` headers for an answer (empty when no quota limits rates)."""
    tightest: dict[str, tuple[tuple[int, float], Limit]] = {}
    for limit, used in zip(reservation.limits, outcome.used, strict=True):
        kind = _KIND.get(limit.metric)
        if kind is None:
            continue
        rank = (max(limit.capacity - used, 0), -(limit.resets_at(now) or now))
        if kind not in tightest or rank < tightest[kind][0]:
            tightest[kind] = rank, limit
    headers: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        if kind in tightest:
            (room, later), limit = tightest[kind]
            headers[f"x-ratelimit-limit-{kind}"] = str(limit.capacity)
            headers[f"x-ratelimit-remaining-{kind}"] = str(room)
            headers[f"x-ratelimit-reset-{kind}"] = go_duration(-later - now)
    return headers


def _retry_after(seconds: float) -> dict[str, str]:
    return {"retry-after": str(max(math.ceil(seconds), 1)),
            "retry-after-ms": str(max(math.ceil(seconds * 1000), 1))}


def refusal(reservation: Reservation, outcome: Outcome, now: float) -> OpenAIError:
    """The 429 for a reservation the store refused (``outcome.refused`` is set)."""
    if outcome.refused is None:
        raise ValueError("the reservation was admitted")
    limit = reservation.limits[outcome.refused]
    charge = reservation.charges[outcome.refused]
    used = outcome.used[outcome.refused]
    headers = rate_limit_headers(reservation, outcome, now)
    whose = f"quota {limit.quota} ({limit.subject})"
    if charge.amount > limit.capacity:
        message = (f"Request too large for {whose} on {limit.describe()}: it reserves"
                   f" {charge.amount} (an estimated {reservation.demand.prompt} prompt tokens"
                   f" and at most {reservation.demand.completion} completion tokens) against a"
                   f" limit of {limit.capacity}. Lower max_tokens, or shorten the prompt.")
        if limit.metric is Metric.REQUESTS:
            message = f"{whose} admits no requests ({limit.describe()}: limit 0)."
        return OpenAIError(429, message, code="insufficient_quota" if limit.budget
                           else "rate_limit_exceeded", headers=headers)
    resets = limit.resets_at(now)
    wait = 1.0 if resets is None else resets - now
    headers |= _retry_after(wait)
    if limit.budget:
        message = (f"You exceeded {whose} on {limit.describe()}: limit {limit.capacity}, used"
                   f" {used}, requested {charge.amount}. It resets in {go_duration(wait)}.")
        return OpenAIError(429, message, code="insufficient_quota", headers=headers)
    if limit.metric is Metric.CONCURRENT:
        message = (f"Too many requests in flight for {whose}: limit {limit.capacity}."
                   " Please try again when one has finished.")
    else:
        message = (f"Rate limit reached for {whose} on {limit.describe()}: limit"
                   f" {limit.capacity}, used {used}, requested {charge.amount}."
                   f" Please try again in {go_duration(wait)}.")
    return OpenAIError(429, message, code="rate_limit_exceeded", headers=headers)


def store_unavailable() -> OpenAIError:
    """The 503 of a fail-closed relay whose counter store cannot be reached."""
    return OpenAIError(503, "The quota counters are unavailable, so requests under a quota are"
                       " refused for now; please retry shortly.", code="quota_unavailable",
                       headers={"retry-after": "1"})
