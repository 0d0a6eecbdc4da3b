"""What an attempt under a quota is charged, by how it ended (the table in relay/metering.py)."""

from __future__ import annotations

from chatprovider.domain.quota.demand import Demand
from chatprovider.domain.sse import Usage
from chatprovider.relay.exchange import Exchange
from chatprovider.relay.metering import attempt_charge

RESERVED = Demand(100, 50)


def _exchange(**fields: object) -> Exchange:
    exchange = Exchange(0.0)
    for name, value in fields.items():
        setattr(exchange, name, value)
    return exchange


def test_an_answer_is_charged_its_usage_else_the_reservation() -> None:
    assert attempt_charge(RESERVED, _exchange(usage=Usage(80, 20)), True) == Demand(80, 20)
    assert attempt_charge(RESERVED, _exchange(), True) == RESERVED


def test_a_failure_before_any_answer_is_charged_no_token() -> None:
    assert attempt_charge(RESERVED, _exchange(), False) == Demand(0, 0)


def test_a_finished_stream_is_charged_its_usage_else_the_reservation() -> None:
    done = {"prepared": True, "completed": True}
    assert attempt_charge(RESERVED, _exchange(usage=Usage(90, 30), **done), True) == Demand(90, 30)
    assert attempt_charge(RESERVED, _exchange(**done), True) == RESERVED


def test_a_stream_cut_short_is_charged_what_was_relayed() -> None:
    # the client hung up (the handler was cancelled: no answer returned) after 7 token events
    cut = _exchange(prepared=True, completed=False, relayed_tokens=7)
    assert attempt_charge(RESERVED, cut, False) == Demand(100, 7)
    assert attempt_charge(RESERVED, cut, True) == Demand(100, 7)
