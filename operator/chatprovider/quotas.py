"""The in-memory view of ChatQuotas that the relay enforces (and the operator may read).

Fed from watch events (:meth:`QuotaIndex.observe`, the same ``(event_type, body)`` observer the
ChatProvider watch uses) and read on the relay's hot path: iterating it yields the
:class:`~chatprovider.domain.quota.limits.Quota` values of one namespace with no I/O and no
lock (one event loop). A quota whose spec does not validate (the CRD's schema should have
refused it) is dropped with a warning, so that an older copy never keeps governing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from chatprovider.api.quota import ChatQuotaSpec
from chatprovider.domain.quota.limits import Quota

__all__ = ["QuotaIndex"]

log = logging.getLogger(__name__)


class QuotaIndex:
    """ChatQuotas by namespace and name, with a version that moves on every change."""

    def __init__(self) -> None:
        self._by_namespace: dict[str, dict[str, Quota]] = {}
        self.version = 0

    def observe(self, event_type: str, body: Mapping[str, Any]) -> None:
        """Apply one watch event (``ADDED``, ``MODIFIED``, ``DELETED``)."""
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        if event_type == "DELETED":
            self._remove(namespace, name)
            return
        try:
            quota = Quota(namespace, name, ChatQuotaSpec.model_validate(body.get("spec") or {}))
        except ValidationError as exc:
            log.warning("ignoring ChatQuota %s/%s: its spec does not validate (%d errors)",
                        namespace, name, exc.error_count())
            self._remove(namespace, name)
            return
        self._by_namespace.setdefault(namespace, {})[name] = quota
        self.version += 1

    def _remove(self, namespace: str, name: str) -> None:
        quotas = self._by_namespace.get(namespace, {})
        if quotas.pop(name, None) is not None:
            self.version += 1
            if not quotas:
                self._by_namespace.pop(namespace, None)

    def in_namespace(self, namespace: str) -> tuple[Quota, ...]:
        """The quotas of ``namespace`` (the only ones that can govern its providers)."""
        return tuple(self._by_namespace.get(namespace, {}).values())

    def __iter__(self) -> Iterator[Quota]:
        return iter([q for quotas in self._by_namespace.values() for q in quotas.values()])

    def __len__(self) -> int:
        return sum(len(quotas) for quotas in self._by_namespace.values())
