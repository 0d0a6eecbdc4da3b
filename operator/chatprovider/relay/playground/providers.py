"""``GET /v1/providers``: the ChatProviders the caller may use, with their health.

Read-only and served from memory (the registry the watch feeds), like ``/v1/models``. A provider
is listed when the caller may ``use`` it (the same SubjectAccessReview as ``/v1/models``),
whether it is Ready or not, so that a user can see *why* their provider is not offered yet.

What is shown is what a user of the provider needs to pick it and to understand its state:
name, display name, description, tags, server type, readiness, conditions, models, last check.
Nothing that locates or unlocks the upstream ever leaves: no endpoint URL, no headers, no
Secret or ConfigMap name, no TLS or proxy settings, no credential version (see
:func:`provider_object`, and the test that asserts it).
"""

from __future__ import annotations

from aiohttp import web

from chatprovider.domain.routing import qualified_id
from chatprovider.domain.status import ready_condition
from chatprovider.registry import ProviderView, Registry
from chatprovider.relay.auth import Access
from chatprovider.relay.exchange import exchange_of

__all__ = ["ProvidersHandler", "provider_object"]


def provider_object(view: ProviderView) -> dict[str, object]:
    """The public description of one provider (no endpoint, no credential, no reference)."""
    spec, status = view.spec, view.status
    key = view.ref
    ready = ready_condition(status)
    up_to_date = status.observed_generation is not None and \
        status.observed_generation == view.generation
    last = status.last_check
    return {
        "id": str(key),
        "object": "chat.provider",
        "namespace": key.namespace,
        "name": key.name,
        "displayName": spec.display_name,
        "description": spec.description,
        "serverType": spec.server_type.value,
        "tags": list(spec.tags),
        "ready": view.ready,
        "reason": ready.reason if ready is not None else "NotChecked",
        "message": ready.message if ready is not None else "not checked yet",
        "upToDate": up_to_date,
        "models": [qualified_id(key, m) for m in view.model_ids] if view.ready else [],
        "conditions": [
            {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message,
             "lastTransitionTime": c.last_transition_time}
            for c in status.conditions
        ],
        "lastCheck": None if last is None else {
            "time": last.time, "latencyMs": last.latency_ms,
            "verificationLatencyMs": last.verification_latency_ms,
        },
    }


class ProvidersHandler:
    """The aiohttp handler; one per relay."""

    def __init__(self, registry: Registry, access: Access) -> None:
        self._registry = registry
        self._access = access

    async def list_providers(self, request: web.Request) -> web.Response:
        caller = await self._access.authenticate(request.headers.get("Authorization"))
        exchange_of(request).user = caller.username
        views = sorted(self._registry, key=lambda v: v.ref)
        keys = [v.ref for v in views]
        allowed = await self._access.allowed(caller, keys)
        data = [provider_object(v) for v, k in zip(views, keys, strict=True)
                if allowed.get(k, False)]
        return web.json_response({"object": "list", "data": data})
