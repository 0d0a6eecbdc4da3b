"""HTTP transport to upstream servers, shared by the operator's prober and the relay.

Per transport profile (TLS trust, proxy), one aiohttp session for the prober and one
:class:`~chatprovider.upstream.pool.Pool` (the relay's own HTTP/1.1 client on llhttp, its hot
path), both behind a resolver that enforces the egress policy on every resolved address.
"""

from chatprovider.upstream.transport import (
    EgressDenied,
    TransportProfile,
    Transports,
)

__all__ = ["EgressDenied", "TransportProfile", "Transports"]
