"""Who is calling, and which providers they may use.

``kubernetes`` mode: the bearer token is checked with a TokenReview for the relay's own
audiences (the review's ``status.audiences`` must name one of them, so a token valid against the
API server is refused and the relay never holds one), each provider with a SubjectAccessReview
(verb ``use``, group ``ai.chatprovider.dev``, resource ``chatproviders``, the provider's namespace
and name, with the caller's user, uid, groups and extra), and each ChatModel (virtual model) the
same way with resource ``chatmodels``. Answers are cached briefly
(:class:`~chatprovider.relay.cache.TTLCache`), tokens by their SHA-256 only and never past the
token's ``exp``. ``none`` mode: every caller is anonymous and may use everything.

Failures of the API server are 503s, never 401s: a caller is refused only when the API server
said so.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, TypeVar

from chatprovider.api.chatmodel import CHATMODEL_PLURAL
from chatprovider.api.v1alpha1 import GROUP, PLURAL
from chatprovider.domain.openai_errors import OpenAIError
from chatprovider.domain.routing import ProviderRef
from chatprovider.domain.virtual_models import ChatModelRef
from chatprovider.kube.client import ApiError, KubeClient
from chatprovider.relay.cache import TTLCache
from chatprovider.settings import RelaySettings

__all__ = ["Access", "Caller", "KubernetesAccess", "OpenAccess", "token_answer_ttl",
           "token_expiry"]

log = logging.getLogger(__name__)

_TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
_CONCURRENT_REVIEWS = 16
_REFUSAL_TTL = 2.0  # seconds a refusal (TokenReview or SubjectAccessReview) is cached

#: What a caller is authorized to ``use``: a ChatProvider, or a ChatModel.
Grant = TypeVar("Grant", ProviderRef, ChatModelRef)


@dataclass(frozen=True)
class Caller:
    """An authenticated caller (as the TokenReview described it)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    expires_at: float | None = None
    """The token's ``exp`` (seconds since the epoch), when it is a JWT that has one."""

    @cached_property
    def cache_key(self) -> str:
        """A digest of everything an authorization depends on (computed once: a Caller is
        the TokenReview cache's value, so one per token)."""
        parts = [self.username, self.uid, *sorted(self.groups)]
        parts += [f"{k}={','.join(v)}" for k, v in sorted(self.extra.items())]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


ANONYMOUS = Caller("system:anonymous", groups=("system:unauthenticated",))


class Access(Protocol):
    """Authentication and authorization, whatever the mode."""

    async def authenticate(self, authorization: str | None) -> Caller:
        """The caller behind an ``Authorization`` header; raises OpenAIError (401/503)."""
        ...

    async def allowed(self, caller: Caller, providers: Iterable[Grant]) -> dict[Grant, bool]:
        """Which of ``providers`` (ChatProviders, or ChatModels) the caller may use; raises
        OpenAIError (503)."""
        ...


class OpenAccess:
    """``none`` mode: no authentication, every provider allowed."""

    async def authenticate(self, authorization: str | None) -> Caller:
        return ANONYMOUS

    async def allowed(self, caller: Caller, providers: Iterable[Grant]) -> dict[Grant, bool]:
        return dict.fromkeys(providers, True)


def _unauthorized(message: str) -> OpenAIError:
    return OpenAIError(401, message, code="invalid_api_key",
                       headers={"WWW-Authenticate": 'Bearer realm="chatprovider-relay"'})


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying it (the TokenReview verified the
    token; this only bounds how long its answer is reused). None for other tokens."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def token_answer_ttl(caller: Caller | None, ttl: float, now: float) -> float:
    """How long a TokenReview answer is reused: a refusal briefly (a ServiceAccount created a
    moment later works within seconds), an acceptance at most ``ttl`` and never past the
    token's expiry."""
    if caller is None:
        return min(ttl, _REFUSAL_TTL)
    if caller.expires_at is None:
        return ttl
    return max(0.0, min(ttl, caller.expires_at - now))


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header; raises a 401 without one."""
    if not authorization:
        raise _unauthorized("missing token (Authorization: Bearer <token>, or x-api-key: <token>)")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("the Authorization header must be 'Bearer <token>'")
    return token


class KubernetesAccess:
    """``kubernetes`` mode, over the relay's own KubeClient (it needs ``create`` on
    tokenreviews and subjectaccessreviews)."""

    def __init__(self, client: KubeClient, settings: RelaySettings) -> None:
        self._client = client
        self._audiences = list(settings.token_audiences)
        self._tokens: TTLCache[str, Caller | None] = TTLCache(
            settings.token_cache_ttl, settings.auth_cache_size)
        self._token_ttl = settings.token_cache_ttl
        self._access: TTLCache[tuple[str, ProviderRef | ChatModelRef], bool] = TTLCache(
            settings.access_cache_ttl, settings.auth_cache_size)
        self._reviews = asyncio.Semaphore(_CONCURRENT_REVIEWS)
        allowed_ttl = settings.access_cache_ttl
        refused_ttl = min(settings.access_cache_ttl, _REFUSAL_TTL)
        self._access_ttl: Callable[[bool], float] = \
            lambda allowed: allowed_ttl if allowed else refused_ttl

    async def authenticate(self, authorization: str | None) -> Caller:
        token = bearer_token(authorization)
        digest = hashlib.sha256(token.encode()).hexdigest()
        caller = await self._tokens.get(digest, lambda: self._review_token(token),
                                        ttl=lambda answer: token_answer_ttl(
                                            answer, self._token_ttl, time.time()))
        if caller is None:
            raise _unauthorized("the bearer token is not valid for this relay")
        if caller.expires_at is not None and caller.expires_at <= time.time():
            raise _unauthorized("the bearer token has expired")
        return caller

    async def _review_token(self, token: str) -> Caller | None:
        spec: dict[str, Any] = {"token": token}
        if self._audiences:
            spec["audiences"] = self._audiences
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        answer = await self._call(_TOKEN_REVIEWS, body, "TokenReview")
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            return None
        if self._audiences and not set(self._audiences) & set(status.get("audiences") or ()):
            log.warning("TokenReview authenticated a token for none of the relay's audiences; "
                        "refused")
            return None
        user = status.get("user") or {}
        extra = {str(k): tuple(str(x) for x in v or ())
                 for k, v in (user.get("extra") or {}).items()}
        return Caller(str(user.get("username", "")), str(user.get("uid", "")),
                      tuple(str(g) for g in user.get("groups") or ()), extra,
                      expires_at=token_expiry(token))

    async def allowed(self, caller: Caller, providers: Iterable[Grant]) -> dict[Grant, bool]:
        keys = list(dict.fromkeys(providers))
        identity = caller.cache_key
        if len(keys) == 1:  # the usual request (one candidate): no task to gather
            return {keys[0]: await self._allowed(caller, identity, keys[0])}
        answers = await asyncio.gather(*(self._allowed(caller, identity, key) for key in keys))
        return dict(zip(keys, answers, strict=True))

    async def _allowed(self, caller: Caller, identity: str, key: ProviderRef | ChatModelRef
                       ) -> bool:
        # A refusal is kept briefly, so a new RoleBinding takes effect within seconds.
        return await self._access.get((identity, key), lambda: self._review_access(caller, key),
                                      ttl=self._access_ttl)

    async def _review_access(self, caller: Caller, key: ProviderRef | ChatModelRef) -> bool:
        # The key's type is part of the cache key too: a ChatModel and a ChatProvider of the
        # same namespace and name are authorized apart.
        resource = CHATMODEL_PLURAL if isinstance(key, ChatModelRef) else PLURAL
        spec: dict[str, Any] = {
            "user": caller.username,
            "groups": list(caller.groups),
            "resourceAttributes": {
                "namespace": key.namespace, "verb": "use", "group": GROUP,
                "resource": resource, "name": key.name,
            },
        }
        if caller.uid:
            spec["uid"] = caller.uid
        if caller.extra:
            spec["extra"] = {k: list(v) for k, v in caller.extra.items()}
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": spec}
        answer = await self._call(_ACCESS_REVIEWS, body, "SubjectAccessReview")
        return bool((answer.get("status") or {}).get("allowed"))

    async def _call(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        try:
            async with self._reviews:
                return await self._client.create(path, body)
        except asyncio.CancelledError:
            raise
        except ApiError as exc:
            log.warning("%s failed: %s %s", what, exc.status, exc.reason)
        except Exception as exc:  # noqa: BLE001 - the API server is unreachable
            log.warning("%s failed: %s", what, type(exc).__name__)
        raise OpenAIError(503, "the relay cannot check credentials right now; retry later",
                          code="auth_unavailable", headers={"Retry-After": "1"})
