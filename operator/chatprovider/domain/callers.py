"""Who a caller is, in the relay's per-caller metrics, and the bound on how many are named (pure).

A ServiceAccount's token names it ``system:serviceaccount:NAMESPACE:NAME``: its metric labels
are ``caller_namespace=NAMESPACE``, ``caller=NAME``. Any other user is ``caller`` alone (its
name as the authenticator gave it), an unauthenticated caller (``--relay-auth none``)
``anonymous``. :class:`CallerLabels` names at most ``limit`` distinct callers per process (the
first ones seen); every later one is counted as ``caller="other"``, so a relay's series stay
bounded however many callers it meets. (A user actually named ``other`` shares that series.)
"""

from __future__ import annotations

from typing import Final

__all__ = ["ANONYMOUS", "OTHER", "CallerLabels", "caller_of"]

OTHER: Final = "other"
ANONYMOUS: Final = "anonymous"
_SA_PREFIX = "system:serviceaccount:"


def caller_of(username: str) -> tuple[str, str]:
    """``(caller_namespace, caller)`` of a user name."""
    if username.startswith(_SA_PREFIX):
        namespace, sep, name = username[len(_SA_PREFIX):].partition(":")
        if sep and namespace and name:
            return namespace, name
    return "", username or ANONYMOUS


class CallerLabels:
    """The labels of callers, naming at most ``limit`` distinct ones."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._named: set[tuple[str, str]] = set()

    def __call__(self, username: str) -> tuple[str, str]:
        caller = caller_of(username)
        if caller in self._named:
            return caller
        if len(self._named) < self.limit:
            self._named.add(caller)
            return caller
        return "", OTHER

    def __len__(self) -> int:
        return len(self._named)
