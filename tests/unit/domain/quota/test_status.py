"""A ChatQuota's status: conditions, the providers governed, usage, and when to write."""

from __future__ import annotations

from tests.unit.domain.quota.helpers import quota

from chatprovider.api.quota import ChatQuotaStatus
from chatprovider.domain.quota.limits import Limit, Metric
from chatprovider.domain.quota.status import (
    UsageReading,
    governed_providers,
    needs_quota_write,
    quota_status,
)
from chatprovider.domain.quota.windows import Window

NOW = 1_780_000_000.0
PROVIDERS = {"vllm": {"pool": "gpu"}, "ollama": {"pool": "cpu"}, "tgi": {}}


def counters(used: int, now: float = NOW) -> dict[str, int]:
    key = Limit("llm/q", "User:alice", Metric.REQUESTS, Window.MINUTE, 10).key(now)
    return {key: used}


def cond(status: ChatQuotaStatus, kind: str) -> tuple[str, str, str]:
    c = next(c for c in status.conditions if c.type == kind)
    return c.status, c.reason, c.message


def test_the_providers_governed_by_name_or_selector() -> None:
    assert governed_providers(quota(), PROVIDERS) == ["vllm"]
    by_label = quota(providers={"selector": {"matchLabels": {"pool": "gpu"}}})
    assert governed_providers(by_label, PROVIDERS) == ["vllm"]
    every = quota(providers={"selector": {}})
    assert governed_providers(every, PROVIDERS) == ["ollama", "tgi", "vllm"]


def test_a_quota_in_force_reports_its_usage() -> None:
    new = quota_status(quota(), 3, ChatQuotaStatus(), PROVIDERS,
                       UsageReading(counters=counters(4), source="redis://r:6379"), NOW)
    assert cond(new, "Ready") == ("True", "Ready", "in force for 1 provider")
    assert cond(new, "UsageReported") == ("True", "UsageRead", "usage read from redis://r:6379")
    assert new.providers == ["vllm"] and new.observed_generation == 3
    assert [(u.subject, u.requests_this_minute, u.peak_fraction) for u in new.usage] == \
        [("User:alice", 4, 0.4)]
    assert new.usage_time == "2026-05-28T20:26:40Z"
    assert all(c.observed_generation == 3 for c in new.conditions)


def test_a_quota_selecting_no_provider_is_not_ready() -> None:
    new = quota_status(quota(providers={"names": ["gone"]}), 1, ChatQuotaStatus(), PROVIDERS,
                       UsageReading(counters={}), NOW)
    status, reason, message = cond(new, "Ready")
    assert (status, reason) == ("False", "NoProvidersSelected") and "governs nothing" in message
    assert new.providers == [] and new.usage == []


def test_an_unreachable_store_says_so_and_keeps_the_last_usage() -> None:
    before = quota_status(quota(), 1, ChatQuotaStatus(), PROVIDERS,
                          UsageReading(counters=counters(4)), NOW)
    down = "the Redis counter store at redis://r:6379 is unavailable (scan: ConnectionError)"
    for fail_open, effect in ((False, "refused with 503 (fail closed)"),
                              (True, "relayed uncounted (fail open)")):
        new = quota_status(quota(), 1, before, PROVIDERS,
                           UsageReading(unavailable=down, fail_open=fail_open), NOW + 60)
        status, reason, message = cond(new, "Ready")
        assert (status, reason) == ("False", "CounterStoreUnavailable")
        assert message.startswith(down) and effect in message
        assert cond(new, "UsageReported")[:2] == ("False", "CounterStoreUnavailable")
        assert new.usage == before.usage and new.usage_time == before.usage_time


def test_counters_in_a_separate_relays_memory_are_not_reported() -> None:
    new = quota_status(quota(), 1, ChatQuotaStatus(), PROVIDERS,
                       UsageReading(unreadable="the counters are in relay memory"), NOW)
    assert cond(new, "Ready")[:2] == ("True", "Ready")
    assert cond(new, "UsageReported") == ("False", "CountersInRelayMemory",
                                          "the counters are in relay memory")
    assert new.usage == [] and new.usage_time is None


def test_an_unchanged_status_is_not_written_again() -> None:
    first = quota_status(quota(), 1, ChatQuotaStatus(), PROVIDERS,
                         UsageReading(counters=counters(4)), NOW)
    assert needs_quota_write(ChatQuotaStatus(), first)
    # the status as the API server gives it back: a round trip through JSON
    stored = ChatQuotaStatus.model_validate(first.model_dump(mode="json", by_alias=True))
    again = quota_status(quota(), 1, stored, PROVIDERS, UsageReading(counters=counters(4)),
                         NOW + 5)
    assert not needs_quota_write(stored, again)
    assert again.usage_time == first.usage_time  # the time of the usage, not of the pass
    assert again.conditions[0].last_transition_time == first.conditions[0].last_transition_time
    more = quota_status(quota(), 1, stored, PROVIDERS, UsageReading(counters=counters(5)),
                        NOW + 5)
    assert needs_quota_write(stored, more) and more.usage_time != first.usage_time
    # a new generation is written, with the transition times kept
    newer = quota_status(quota(), 2, stored, PROVIDERS, UsageReading(counters=counters(4)),
                         NOW + 5)
    assert needs_quota_write(stored, newer)
    assert newer.conditions[0].last_transition_time == first.conditions[0].last_transition_time


def test_conditions_of_other_managers_do_not_cause_a_write() -> None:
    first = quota_status(quota(), 1, ChatQuotaStatus(), PROVIDERS,
                         UsageReading(counters={}), NOW)
    stored = ChatQuotaStatus.model_validate(first.model_dump(mode="json", by_alias=True))
    stored.conditions.append(stored.conditions[0].model_copy(update={"type": "Audited"}))
    again = quota_status(quota(), 1, stored, PROVIDERS, UsageReading(counters={}), NOW + 5)
    assert not needs_quota_write(stored, again)
