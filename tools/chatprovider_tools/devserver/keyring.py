"""The set of API keys the dev server accepts, replaceable at runtime (for rotation tests)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["KeyRing"]


class KeyRing:
    """Accepted bearer tokens. An empty ring accepts every request (no auth).

    Replacing the set swaps one immutable reference, so it is safe from any thread and a request
    always sees either the old or the new set, never a mix.
    """

    __slots__ = ("_headers",)

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._headers: frozenset[str] = frozenset()
        self.set(keys)

    def set(self, keys: Iterable[str]) -> None:
        """Accept exactly ``keys`` from now on (an empty iterable turns auth off)."""
        keys = list(keys)
        if any(not isinstance(k, str) or not k for k in keys):
            raise ValueError("API keys must be non-empty strings")
        self._headers = frozenset(f"Bearer {k}" for k in keys)

    @property
    def keys(self) -> frozenset[str]:
        """The accepted keys."""
        return frozenset(h[len("Bearer ") :] for h in self._headers)

    @property
    def enabled(self) -> bool:
        """Whether requests must carry a key."""
        return bool(self._headers)

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value passes (always, when auth is off)."""
        headers = self._headers
        return not headers or authorization in headers
