"""The callers the relay's per-caller metrics name, and their bound."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chatprovider.domain.callers import ANONYMOUS, OTHER, CallerLabels, caller_of


def test_a_service_account_is_its_namespace_and_name() -> None:
    assert caller_of("system:serviceaccount:team-a:app") == ("team-a", "app")
    assert caller_of("alice@example.com") == ("", "alice@example.com")
    assert caller_of("") == ("", ANONYMOUS)
    # not a ServiceAccount's user name: kept whole
    assert caller_of("system:serviceaccount:team-a") == ("", "system:serviceaccount:team-a")


def test_callers_past_the_limit_are_counted_as_other() -> None:
    labels = CallerLabels(2)
    assert labels("alice") == ("", "alice")
    assert labels("system:serviceaccount:ns:app") == ("ns", "app")
    assert labels("bob") == ("", OTHER)
    # the first ones keep their names
    assert labels("alice") == ("", "alice") and labels("bob") == ("", OTHER)
    assert len(labels) == 2
    assert CallerLabels(0)("alice") == ("", OTHER)


@given(st.lists(st.text(max_size=8).filter(lambda u: u != OTHER), max_size=60),
       st.integers(0, 10))
def test_at_most_the_limit_of_callers_is_ever_named(users: list[str], limit: int) -> None:
    labels = CallerLabels(limit)
    named = {labels(u) for u in users} - {("", OTHER)}
    assert len(named) <= limit
    # while the limit is not reached, nobody is "other"
    distinct = {caller_of(u) for u in users}
    if len(distinct) <= limit:
        assert named == distinct
