"""Which callers a quota's subjects name, and whose counters a caller is charged on (pure).

A caller is what the relay's authentication established: a user name and groups, as a
TokenReview returns them (:class:`CallerIdentity`; the relay's ``Caller`` is one). Subjects match
as in RBAC:

* ``ServiceAccount`` NAMESPACE/NAME: the user ``system:serviceaccount:NAMESPACE:NAME``;
* ``User`` NAME: the user NAME;
* ``Group`` NAME: a caller in the group. A ServiceAccount is always in ``system:serviceaccounts``,
  ``system:serviceaccounts:NAMESPACE`` and ``system:authenticated`` (the API server puts those
  groups in every ServiceAccount token's review; they are derived from the user name here too,
  so that a whole namespace matches whatever the authenticator reported).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from chatprovider.api.quota import QuotaScope, Subject, SubjectKind

__all__ = ["SHARED", "CallerIdentity", "counter_subjects", "groups_of", "matches",
           "subject_label"]

_SA_PREFIX = "system:serviceaccount:"
#: The counter subject of a Shared quota.
SHARED = "*"


class CallerIdentity(Protocol):
    """An authenticated caller: its user name and groups."""

    @property
    def username(self) -> str: ...

    @property
    def groups(self) -> Sequence[str]: ...


def groups_of(caller: CallerIdentity) -> frozenset[str]:
    """The caller's groups, with those every ServiceAccount is in."""
    groups = set(caller.groups)
    if caller.username.startswith(_SA_PREFIX):
        namespace, _, name = caller.username.removeprefix(_SA_PREFIX).partition(":")
        if namespace and name:
            groups |= {"system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                       "system:authenticated"}
    return frozenset(groups)


def matches(subject: Subject, caller: CallerIdentity,
            groups: frozenset[str] | None = None) -> bool:
    """Whether ``subject`` names ``caller`` (``groups``: :func:`groups_of`, if computed)."""
    if subject.kind is SubjectKind.SERVICE_ACCOUNT:
        return caller.username == f"{_SA_PREFIX}{subject.namespace}:{subject.name}"
    if subject.kind is SubjectKind.USER:
        return caller.username == subject.name
    return subject.name in (groups_of(caller) if groups is None else groups)


def subject_label(subject: Subject) -> str:
    """How a subject's counters are named: ``ServiceAccount:NS/NAME``, ``User:NAME``,
    ``Group:NAME``."""
    if subject.kind is SubjectKind.SERVICE_ACCOUNT:
        return f"ServiceAccount:{subject.namespace}/{subject.name}"
    return f"{subject.kind.value}:{subject.name}"


def counter_subjects(scope: QuotaScope, subjects: Sequence[Subject],
                     caller: CallerIdentity) -> Iterator[str]:
    """Whose counters ``caller`` is charged on under a quota (none when no subject names it):
    each matching subject (PerSubject), the caller's user name (PerCaller) or :data:`SHARED`."""
    groups = groups_of(caller)
    matched = [s for s in subjects if matches(s, caller, groups)]
    if not matched:
        return
    if scope is QuotaScope.PER_SUBJECT:
        yield from dict.fromkeys(subject_label(s) for s in matched)
    elif scope is QuotaScope.PER_CALLER:
        yield caller.username
    else:
        yield SHARED
