"""HTTP transport to upstream servers, shared by the operator's prober and the relay.

One aiohttp session (connection pool) per transport profile (TLS trust, proxy), with a resolver
that enforces the egress policy on every resolved address.
"""

from chatprovider.upstream.transport import (
    EgressDenied,
    TransportProfile,
    Transports,
)

__all__ = ["EgressDenied", "TransportProfile", "Transports"]
