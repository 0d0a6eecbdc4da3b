"""Choosing a provider and an upstream model id for a request's ``model`` (pure).

The contract (also in docs/relay.md):

* ``GET /v1/models`` lists, for every (provider, model) the caller may use, the *qualified id*
  ``<namespace>/<provider>/<model>``. Model ids may themselves contain ``/`` and ``:``.
* A request's ``model`` is either
  - a qualified id: when its first two ``/``-segments name a known ChatProvider, that provider
    is pinned and the rest is the upstream model id; or
  - a bare upstream id, which routes when exactly one usable provider offers it (several →
    :class:`AmbiguousModel`, unless the fail-over policy is on: then all of them, in order).
* ``X-ChatProvider: <namespace>/<name>`` pins a provider too; ``model`` may then be bare or
  qualified for that same provider.
* A pinned provider the caller may not use → :class:`ProviderForbidden`; one that is not Ready →
  :class:`ProviderNotReady`; a model it does not offer → :class:`UnknownModel`. Providers that
  are not Ready are otherwise invisible. A bare id that no usable provider offers →
  :class:`UnknownModel` (also when only forbidden providers offer it: nothing is revealed).

Authorization is a synchronous predicate here; the relay answers it beforehand (asynchronously)
for the providers :func:`candidates` names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

__all__ = [
    "PROVIDER_HEADER",
    "AmbiguousModel",
    "BadPin",
    "Catalog",
    "CatalogEntry",
    "ProviderForbidden",
    "ProviderRef",
    "ProviderNotReady",
    "Route",
    "RoutingError",
    "UnknownModel",
    "UnknownProvider",
    "candidates",
    "parse_pin",
    "qualified_id",
    "route",
    "split_qualified",
]

#: The header that pins a request to one provider, and that names on an answer the provider
#: that served it (``namespace/name``).
PROVIDER_HEADER = "X-ChatProvider"

#: A Kubernetes namespace (DNS label) and a ChatProvider name (DNS subdomain).
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True, order=True, slots=True)
class ProviderRef:
    """Namespace and name of a ChatProvider."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, order=True, slots=True)
class Route:
    """Where one request goes: a provider and the model id as that provider names it."""

    provider: ProviderRef
    model: str

    @property
    def qualified(self) -> str:
        return qualified_id(self.provider, self.model)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One known provider: whether it is Ready, and the models it offers when it is."""

    key: ProviderRef
    ready: bool
    models: tuple[str, ...] = ()


class RoutingError(Exception):
    """The request cannot be routed; ``status`` and ``code`` say why (OpenAI error codes)."""

    status = 400
    code = "invalid_request_error"

    def __init__(self, message: str, candidates: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.candidates = candidates


class BadPin(RoutingError):
    """The ``X-ChatProvider`` header is malformed or contradicts ``model``."""

    code = "invalid_provider"


class AmbiguousModel(RoutingError):
    """Several usable providers offer this bare id; ``candidates`` are their qualified ids."""

    code = "ambiguous_model"


class UnknownModel(RoutingError):
    """No usable provider offers the model; ``candidates`` lists (some) usable qualified ids."""

    status = 404
    code = "model_not_found"


class UnknownProvider(RoutingError):
    """``X-ChatProvider`` names no known provider."""

    status = 404
    code = "provider_not_found"


class ProviderForbidden(RoutingError):
    """The caller may not use the pinned provider."""

    status = 403
    code = "provider_forbidden"


class ProviderNotReady(RoutingError):
    """The pinned provider exists but is not Ready."""

    status = 503
    code = "provider_not_ready"


def qualified_id(provider: ProviderRef, model: str) -> str:
    """``<namespace>/<name>/<model>``."""
    return f"{provider.namespace}/{provider.name}/{model}"


def split_qualified(model: str) -> tuple[ProviderRef, str] | None:
    """The (provider, rest) a model string would pin if it were qualified; None if it cannot be
    (fewer than three segments, an empty rest, or segments that are not valid names)."""
    namespace, sep1, rest = model.partition("/")
    name, sep2, upstream = rest.partition("/")
    if not (sep1 and sep2 and upstream):
        return None
    if not (_NAMESPACE.fullmatch(namespace) and _NAME.fullmatch(name)):
        return None
    return ProviderRef(namespace, name), upstream


def parse_pin(header: str) -> ProviderRef:
    """The provider named by an ``X-ChatProvider: <namespace>/<name>`` header."""
    namespace, sep, name = header.strip().partition("/")
    if not sep or not _NAMESPACE.fullmatch(namespace) or not _NAME.fullmatch(name):
        raise BadPin("X-ChatProvider must be <namespace>/<name>")
    return ProviderRef(namespace, name)


@dataclass(frozen=True)
class Catalog:
    """Every known provider, with an index from bare model id to the Ready providers offering it.

    Build it once per registry version; it is immutable and cheap to query.
    """

    entries: Mapping[ProviderRef, CatalogEntry]
    _offers: Mapping[str, tuple[ProviderRef, ...]] = field(repr=False)

    @classmethod
    def build(cls, entries: Iterable[CatalogEntry]) -> Catalog:
        by_key = {e.key: e for e in entries}
        offers: dict[str, list[ProviderRef]] = {}
        for key in sorted(by_key):
            entry = by_key[key]
            if entry.ready:
                for model in dict.fromkeys(entry.models):
                    offers.setdefault(model, []).append(key)
        return cls(by_key, {m: tuple(keys) for m, keys in offers.items()})

    def get(self, key: ProviderRef) -> CatalogEntry | None:
        return self.entries.get(key)

    def ready_providers(self) -> list[ProviderRef]:
        return sorted(k for k, e in self.entries.items() if e.ready)

    def offers(self, model: str) -> tuple[ProviderRef, ...]:
        """Ready providers offering the bare id ``model``, sorted."""
        return self._offers.get(model, ())

    def usable(self, may_use: Callable[[ProviderRef], bool]) -> Iterator[Route]:
        """Every (provider, model) the caller may use: what ``GET /v1/models`` lists."""
        for key in self.ready_providers():
            if may_use(key):
                for model in dict.fromkeys(self.entries[key].models):
                    yield Route(key, model)

    def listing(self, may_use: Callable[[ProviderRef], bool], limit: int) -> tuple[str, ...]:
        """At most ``limit`` usable qualified ids, for an error message."""
        out: list[str] = []
        for r in self.usable(may_use):
            if len(out) >= limit:
                break
            out.append(r.qualified)
        return tuple(out)


def _pinned_target(model: str, catalog: Catalog, pin: ProviderRef | None) -> ProviderRef | None:
    if pin is not None:
        return pin
    split = split_qualified(model)
    if split is not None and split[0] in catalog.entries:
        return split[0]
    return None


def continuation_pin(model: str, catalog: Catalog, pin: ProviderRef | None,
                     origin: ProviderRef | None) -> ProviderRef | None:
    """The pin of a request that continues an earlier answer (a Responses call with
    ``previous_response_id``) made by ``origin``: what the caller chose when it chose (the
    ``X-ChatProvider`` header, or a qualified model id), otherwise ``origin``, so that a bare
    model reaches the provider that holds the conversation."""
    if pin is not None or origin is None or _pinned_target(model, catalog, None) is not None:
        return pin
    return origin


def candidates(model: str, catalog: Catalog, pin: ProviderRef | None = None
               ) -> tuple[ProviderRef, ...]:
    """The providers whose authorization :func:`route` will ask about."""
    target = _pinned_target(model, catalog, pin)
    if target is not None:
        return (target,) if target in catalog.entries else ()
    return catalog.offers(model)


def route(
    model: str,
    catalog: Catalog,
    may_use: Callable[[ProviderRef], bool],
    pin: ProviderRef | None = None,
    *,
    failover: bool = False,
    listing_limit: int = 20,
) -> tuple[Route, ...]:
    """The route(s) for a request, in the order to try them (one unless ``failover``).

    Raises a :class:`RoutingError` subclass. ``may_use`` is asked only about providers that
    :func:`candidates` names.
    """
    target = _pinned_target(model, catalog, pin)
    if target is not None:
        return (_pinned(model, catalog, may_use, target, header=pin is not None,
                        listing_limit=listing_limit),)
    usable = tuple(k for k in catalog.offers(model) if may_use(k))
    if not usable:
        raise UnknownModel(f"model {model!r} is not offered by any provider you may use")
    if len(usable) == 1 or failover:
        return tuple(Route(k, model) for k in usable)
    ids = tuple(qualified_id(k, model) for k in usable)
    raise AmbiguousModel(
        f"model {model!r} is offered by {len(ids)} providers; use a qualified id such as"
        f" {ids[0]!r} or the X-ChatProvider header",
        ids[:listing_limit],
    )


def _pinned(model: str, catalog: Catalog, may_use: Callable[[ProviderRef], bool],
            key: ProviderRef, *, header: bool, listing_limit: int) -> Route:
    entry = catalog.get(key)
    if entry is None:
        raise UnknownProvider(f"provider {key} does not exist")
    if not may_use(key):
        raise ProviderForbidden(f"you may not use provider {key}")
    if not entry.ready:
        raise ProviderNotReady(f"provider {key} is not ready")
    offered = set(entry.models)
    if header:
        if model in offered:
            return Route(key, model)
        split = split_qualified(model)
        if split is not None and split[0] == key and split[1] in offered:
            return Route(key, split[1])
        if split is not None and split[0] != key and split[0] in catalog.entries:
            raise BadPin(f"model {model!r} names provider {split[0]} but X-ChatProvider"
                         f" pins {key}")
        upstream = model
    else:
        upstream = model.split("/", 2)[2]
        if upstream in offered:
            return Route(key, upstream)
    listing = tuple(qualified_id(key, m) for m in entry.models[:listing_limit])
    raise UnknownModel(f"provider {key} does not offer model {upstream!r}", listing)
