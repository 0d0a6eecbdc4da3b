"""status.usage: the sets of counters closest to a limit."""

from __future__ import annotations

from tests.unit.domain.quota.helpers import PROVIDER, Caller, quota

from chatprovider.domain.quota.demand import Demand
from chatprovider.domain.quota.ledger import admit, reserve
from chatprovider.domain.quota.limits import applicable_limits
from chatprovider.domain.quota.report import usage_report

NOW = 1_780_000_000.0


def test_usage_is_reported_per_set_of_counters_most_used_first() -> None:
    q = quota(scope="PerCaller", subjects=[{"kind": "Group", "name": "team"}],
              limits={"requestsPerMinute": 10, "tokensPerDay": 1000, "concurrentRequests": 4})
    counters: dict[str, int] = {}
    for name, requests, tokens in (("a", 1, 900), ("b", 8, 10), ("c", 2, 20)):
        limits = applicable_limits([q], Caller(name, ("team",)), PROVIDER, {})
        reservation = reserve(limits, Demand(tokens, 0), NOW, "l")
        outcome = admit([requests - 1, 0, 0], reservation.charges)
        counters |= dict(zip([c.key for c in reservation.charges], outcome.used, strict=True))
    # an earlier window's counter lingers until it expires; it is not reported
    old = applicable_limits([q], Caller("old", ("team",)), PROVIDER, {})[0].key(NOW - 120)
    counters[old] = 10
    counters["llm/other|x|requests|minute:0"] = 5

    report = usage_report(q, counters, NOW)
    assert [u.subject for u in report] == ["a", "b", "c"]
    assert report[0].tokens_today == 900 and report[0].peak_fraction == 0.9
    assert report[1].requests_this_minute == 8 and report[1].peak_fraction == 0.8
    assert report[2].concurrent_requests == 1 and report[2].tokens_this_minute is None
    assert len(usage_report(q, counters, NOW, top=2)) == 2
