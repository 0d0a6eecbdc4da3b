"""Which provider made each Responses answer this relay replica relayed.

A Responses call that continues a conversation (``previous_response_id``) must reach the
provider that stored the earlier response. When the caller's ``model`` does not choose a provider
itself (a bare id, no ``X-ChatProvider`` header), the relay pins the one remembered here
(:func:`~chatprovider.domain.routing.continuation_pin`).

The memory is this replica's only, bounded (least recently used forgotten first) and lost on
restart: with several relay replicas, or after a restart, a bare id is routed by its model as
usual. Callers that need certainty use the qualified id or the header (docs/relay.md).
"""

from __future__ import annotations

from collections import OrderedDict

from chatprovider.domain.routing import ProviderRef

__all__ = ["ResponseOrigins"]

#: Entries kept: about 200 bytes each, so at most a few MB.
CAPACITY = 20_000


class ResponseOrigins:
    """Response id to provider, least recently used forgotten first."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._providers: OrderedDict[str, ProviderRef] = OrderedDict()

    def remember(self, response_id: str, provider: ProviderRef) -> None:
        self._providers[response_id] = provider
        self._providers.move_to_end(response_id)
        while len(self._providers) > self._capacity:
            self._providers.popitem(last=False)

    def provider_of(self, response_id: object) -> ProviderRef | None:
        """The provider that made ``response_id`` (any JSON value: only strings are ids)."""
        if not isinstance(response_id, str):
            return None
        provider = self._providers.get(response_id)
        if provider is not None:
            self._providers.move_to_end(response_id)
        return provider
