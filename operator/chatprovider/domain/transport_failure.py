"""What went wrong on the way to an upstream server: one taxonomy for the prober and the relay.

The operator reports a :class:`TransportFailure` as a condition reason, the relay as the error
code of its answer; both tables are here so that the two can never disagree on what a failure is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from chatprovider.domain.conditions import Reason
from chatprovider.domain.openai_errors import UpstreamFailureKind

__all__ = ["TransportFailure", "TransportFailureKind"]


class TransportFailureKind(StrEnum):
    """Why a request did not get (all of) an HTTP answer."""

    EGRESS_DENIED = "egress_denied"
    TLS_HOSTNAME_MISMATCH = "tls_hostname_mismatch"
    TLS_UNKNOWN_AUTHORITY = "tls_unknown_authority"
    TLS = "tls_error"
    PROXY = "proxy_error"
    DNS = "dns_failure"
    CONNECT_TIMEOUT = "connect_timeout"
    REFUSED = "connection_refused"
    TIMEOUT = "timeout"
    CONNECT_FAILED = "connect_failed"
    DISCONNECTED = "disconnected"

    @property
    def reason(self) -> Reason:
        """The condition reason the operator reports for it."""
        return _REASONS[self]

    @property
    def upstream_failure(self) -> UpstreamFailureKind:
        """The failure the relay answers for it (timeouts there are before the first byte)."""
        return _RELAY[self]


K = TransportFailureKind

_REASONS: dict[TransportFailureKind, Reason] = {
    K.EGRESS_DENIED: Reason.EGRESS_DENIED,
    K.TLS_HOSTNAME_MISMATCH: Reason.TLS_HOSTNAME_MISMATCH,
    K.TLS_UNKNOWN_AUTHORITY: Reason.TLS_UNKNOWN_AUTHORITY,
    K.TLS: Reason.TLS_ERROR,
    K.PROXY: Reason.PROXY_ERROR,
    K.DNS: Reason.DNS_FAILURE,
    K.CONNECT_TIMEOUT: Reason.TIMEOUT,
    K.REFUSED: Reason.CONNECTION_REFUSED,
    K.TIMEOUT: Reason.TIMEOUT,
    K.CONNECT_FAILED: Reason.CONNECTION_FAILED,
    K.DISCONNECTED: Reason.CONNECTION_FAILED,
}

_RELAY: dict[TransportFailureKind, UpstreamFailureKind] = {
    K.EGRESS_DENIED: UpstreamFailureKind.EGRESS_DENIED,
    K.TLS_HOSTNAME_MISMATCH: UpstreamFailureKind.TLS,
    K.TLS_UNKNOWN_AUTHORITY: UpstreamFailureKind.TLS,
    K.TLS: UpstreamFailureKind.TLS,
    K.PROXY: UpstreamFailureKind.PROXY,
    K.DNS: UpstreamFailureKind.DNS,
    K.CONNECT_TIMEOUT: UpstreamFailureKind.CONNECT_TIMEOUT,
    K.REFUSED: UpstreamFailureKind.REFUSED,
    K.TIMEOUT: UpstreamFailureKind.FIRST_BYTE_TIMEOUT,
    K.CONNECT_FAILED: UpstreamFailureKind.CONNECT_FAILED,
    K.DISCONNECTED: UpstreamFailureKind.DISCONNECTED,
}


@dataclass(frozen=True)
class TransportFailure:
    """A failure and a short message that holds no URL, header or key."""

    kind: TransportFailureKind
    detail: str
