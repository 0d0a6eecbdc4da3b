"""What an upstream call needs, from a provider's spec and the objects it references.

The spec-derived part (URLs, timeouts, headers, proxy) is computed once per observed version of
the provider. The key and the CA bundle are read on every request from
:class:`~chatprovider.kube.objects.ReferencedObjects` (a dictionary look-up, no I/O once the
watch has delivered the Secret), so a rotated key is used from the next request on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from chatprovider.domain.api_key import api_key_from
from chatprovider.domain.apis import Operation
from chatprovider.domain.endpoint import InvalidEndpoint, ResolvedEndpoint, resolve_endpoint
from chatprovider.domain.openai_errors import OpenAIError
from chatprovider.domain.proxy import proxy_for
from chatprovider.kube.objects import ObjectSnapshot, ReferencedObjects
from chatprovider.registry import ObjectRef, ProviderView
from chatprovider.upstream.transport import TransportProfile

__all__ = ["Target", "Targets"]


@dataclass(frozen=True)
class _Static:
    endpoint: ResolvedEndpoint
    connect: float
    first_byte: float
    idle: float
    headers: tuple[tuple[str, str], ...]
    proxy: str | None


@dataclass(frozen=True)
class Target:
    """One upstream call. ``api_key`` is secret: it is in no repr, message or log."""

    provider: str
    url: str
    host: str
    profile: TransportProfile
    headers: tuple[tuple[str, str], ...]
    connect: float
    first_byte: float
    idle: float
    api_key: str | None = field(default=None, repr=False)


def _unavailable(provider: str, what: str) -> OpenAIError:
    return OpenAIError(503, f"provider {provider} is not usable right now: {what}",
                       code="provider_not_ready", headers={"Retry-After": "1"})


class Targets:
    """Builds :class:`Target` objects; caches the spec-derived part per provider version."""

    def __init__(self, objects: ReferencedObjects) -> None:
        self._objects = objects
        self._static: dict[tuple[str, str], tuple[tuple[str, int], _Static]] = {}

    def _static_of(self, view: ProviderView) -> _Static:
        key = (view.ref.namespace, view.ref.name)
        version = (view.resource_version, view.generation)
        cached = self._static.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        spec = view.spec
        try:
            endpoint = resolve_endpoint(spec.endpoint)
        except InvalidEndpoint as exc:
            raise _unavailable(str(view.ref), str(exc)) from None
        connect = spec.timeouts.connect.total_seconds()
        first_byte = spec.timeouts.request.total_seconds()
        idle = spec.timeouts.stream_idle.total_seconds()
        proxy = None
        if spec.proxy is not None:
            proxy = proxy_for(endpoint.host, spec.proxy.url, spec.proxy.no_proxy)
        static = _Static(endpoint, connect, first_byte, idle,
                         tuple((h.name, h.value) for h in spec.headers), proxy)
        if len(self._static) > 4096:
            self._static.clear()
        self._static[key] = ((view.resource_version, view.generation), static)
        return static

    async def target(self, view: ProviderView, operation: Operation) -> Target:
        """The call to make; raises OpenAIError (503) when the key or CA is unavailable."""
        static = self._static_of(view)
        provider = str(view.ref)
        api_key = None
        key_ref = view.spec.api_key_secret_ref
        if key_ref is not None:
            ref = ObjectRef("Secret", view.ref.namespace, key_ref.name)
            snap = await self._snapshot(ref, provider)
            raw = snap.data.get(key_ref.key) if snap.exists else None
            api_key = _text(raw)
            if not api_key:
                raise _unavailable(provider, "its API key Secret is missing or empty")
        ca_pem = None
        bundle = view.spec.tls.ca_bundle
        if bundle is not None:
            selector = bundle.secret_key_ref or bundle.config_map_key_ref
            kind = "Secret" if bundle.secret_key_ref is not None else "ConfigMap"
            if selector is not None:
                ref = ObjectRef(kind, view.ref.namespace, selector.name)
                snap = await self._snapshot(ref, provider)
                ca_pem = snap.data.get(selector.key) if snap.exists else None
            if not ca_pem:
                raise _unavailable(provider, "its CA bundle is missing")
        profile = TransportProfile(ca_pem=ca_pem,
                                   insecure_skip_verify=view.spec.tls.insecure_skip_verify,
                                   proxy=static.proxy)
        endpoint = static.endpoint
        return Target(provider, operation.url(endpoint.base_url), endpoint.host, profile,
                      static.headers, static.connect, static.first_byte, static.idle, api_key)

    async def _snapshot(self, ref: ObjectRef, provider: str) -> ObjectSnapshot:
        snap = self._objects.peek(ref)
        if snap is not None:
            return snap
        try:  # the watch has not delivered it yet: wait for it (bounded)
            return await self._objects.get(ref)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the API server is unreachable
            raise _unavailable(provider, f"its {ref.kind} cannot be read") from None


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else api_key_from(raw)
