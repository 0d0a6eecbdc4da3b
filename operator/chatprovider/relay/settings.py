"""The relay's settings: one frozen object built at start-up and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DEFAULT_TOKEN_AUDIENCE", "AuthMode", "BareModelPolicy", "RelaySettings"]

#: The audience callers' tokens are issued for unless configured otherwise.
DEFAULT_TOKEN_AUDIENCE = "chatprovider-relay"


class AuthMode(StrEnum):
    """How callers are authenticated and authorized."""

    KUBERNETES = "kubernetes"
    """Bearer tokens checked with TokenReview; each provider authorized with a
    SubjectAccessReview (verb ``use`` on ``chatproviders.ai.chatprovider.dev``)."""
    NONE = "none"
    """Anyone who can reach the port may use every Ready provider. For the local demo only."""


class BareModelPolicy(StrEnum):
    """What a bare model id offered by several usable providers does."""

    UNIQUE = "unique"
    """Answer 400 listing the qualified ids to choose from."""
    FAILOVER = "failover"
    """Use the first provider (ordered by namespace/name); one that refuses the connection, fails
    DNS, is denied by the egress policy or times out connecting is skipped for the next."""


@dataclass(frozen=True, kw_only=True)
class RelaySettings:
    """Everything the relay can be told. All durations are in seconds."""

    host: str = "127.0.0.1"
    """Address to listen on; ``0.0.0.0`` (or ``::``) in a pod."""
    port: int = 8080
    """TCP port to listen on; 0 picks a free one (read it from ``Relay.port``)."""
    auth_mode: AuthMode = AuthMode.KUBERNETES
    """``kubernetes`` (TokenReview + SubjectAccessReview) or ``none`` (local demo only)."""
    token_audiences: tuple[str, ...] = (DEFAULT_TOKEN_AUDIENCE,)
    """Audiences a caller's token must be issued for (TokenReview ``spec.audiences``, and the
    review's ``status.audiences`` is checked). A token for the API server itself is refused, so
    the relay cannot replay callers' tokens against it: callers mount a projected
    ServiceAccount token with this audience (docs/clients.md). Empty: the API server's own
    audiences (not recommended)."""
    token_cache_ttl: float = 30.0
    """How long a TokenReview answer is reused (keyed by a hash of the token), and never past
    the token's own expiry: a deleted ServiceAccount is refused within this time."""
    access_cache_ttl: float = 10.0
    """How long a SubjectAccessReview answer is reused (per user and provider): a revoked
    binding is refused within this time, and an open stream is re-authorized this often."""
    max_stream_duration: float = 0.0
    """Longest a streamed answer may last, in seconds; it then ends with an error event. 0: no
    limit (streams end when the upstream ends them)."""
    auth_cache_size: int = 10_000
    """Entries kept in each of the two caches (least recently used dropped first)."""
    max_body_bytes: int = 8 * 1024 * 1024
    """Largest request body accepted; larger → 413."""
    max_response_bytes: int = 64 * 1024 * 1024
    """Largest non-streamed upstream answer relayed; larger → 502."""
    max_header_line: int = 8190
    """Longest request line or header line accepted (aiohttp ``max_line_size``)."""
    max_header_field: int = 8190
    """Longest single header accepted (aiohttp ``max_field_size``)."""
    max_headers: int = 128
    """Most request headers accepted."""
    keepalive_interval: float = 15.0
    """Send an SSE ``: keep-alive`` comment after this much silence in a stream; 0 disables."""
    provider_concurrency: int = 256
    """Requests in flight to one provider at most (streams count until they end)."""
    queue_timeout: float = 10.0
    """How long a request over ``provider_concurrency`` waits for a slot before a 429 (with
    ``Retry-After: 1``); 0 refuses at once."""
    bare_model_policy: BareModelPolicy = BareModelPolicy.UNIQUE
    """What a bare model id offered by several usable providers does."""
    listing_limit: int = 20
    """Most qualified ids listed in a 400 (ambiguous) or 404 (unknown model) message."""
    shutdown_grace: float = 30.0
    """On stop, how long in-flight requests (including streams) may take to finish."""
    access_log: bool = True
    """Log one line per request (never with a body or a header value)."""
    playground: bool = False
    """Serve the browser chat playground at ``/`` and ``GET /v1/providers`` (the caller's
    providers and their conditions). Off by default; ``chatprovider up`` turns it on."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        positive = {
            "token_cache_ttl": self.token_cache_ttl, "access_cache_ttl": self.access_cache_ttl,
            "auth_cache_size": self.auth_cache_size, "max_body_bytes": self.max_body_bytes,
            "max_response_bytes": self.max_response_bytes,
            "max_header_line": self.max_header_line, "max_header_field": self.max_header_field,
            "max_headers": self.max_headers, "provider_concurrency": self.provider_concurrency,
            "listing_limit": self.listing_limit,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive")
        for name, value in {"keepalive_interval": self.keepalive_interval,
                            "queue_timeout": self.queue_timeout,
                            "max_stream_duration": self.max_stream_duration,
                            "shutdown_grace": self.shutdown_grace}.items():
            if value < 0:
                raise ValueError(f"{name} must not be negative")
