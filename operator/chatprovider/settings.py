"""Typed settings of the operator process, built once at start-up from flags and environment.

Every field has a ``CHATPROVIDER_*`` environment variable and a ``chatprovider run`` flag of the
same name (see ``chatprovider run --help``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chatprovider.domain.egress import EgressPolicy

__all__ = ["OperatorSettings"]


@dataclass(frozen=True)
class OperatorSettings:
    """How the operator runs."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty means the whole cluster."""
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    """Which addresses probes may connect to (link-local and metadata refused by default)."""
    workers: int = 16
    """How many providers are checked concurrently."""
    jitter: float = 0.1
    """Fraction of the interval added at random to each re-check, so providers drift apart."""
    min_retry_seconds: float = 5.0
    """First back-off after a transient failure; doubles up to the provider's interval."""
    probe_body_limit: int = 4 * 1024 * 1024
    """Largest models or verification answer read, in bytes."""
    kubeconfig: str | None = None
    """Path of a kubeconfig; None means in-cluster, then $KUBECONFIG / ~/.kube/config."""
    log_format: str = "text"
    """``text`` or ``json``."""
    log_level: str = "INFO"
    """Python logging level name."""
    require_secret_label: bool = False
    """Read only Secrets labelled ``ai.chatprovider.dev/provider-secret=true``; any other is
    treated exactly as a missing one. Defence in depth for clusters that cannot run the
    admission policy (docs/security.md)."""
    refresh_annotation: str = "ai.chatprovider.dev/refresh"
    """Changing this annotation's value forces an immediate re-check."""
    watch_server_timeout: int = 240
    """The API server ends each watch request (of ChatProviders, and of the Secrets and
    ConfigMaps they reference) after this many seconds; it is then resumed. A Secret watch
    silent for longer (plus at most 30 s) is presumed dead and re-established."""
    watch_client_timeout: float = 270.0
    """A ChatProvider watch request is abandoned after this many seconds in total."""
    watch_inactivity_timeout: float = 70.0
    """A ChatProvider watch that delivers nothing (not even a bookmark) for this many seconds is
    presumed dead (a silent connection) and re-established."""
