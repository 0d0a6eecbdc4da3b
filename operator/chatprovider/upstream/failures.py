"""Naming a client exception: the one classifier of the errors of both clients (the prober's
aiohttp session, the relay's :mod:`~chatprovider.upstream.pool`) and of the OS."""

from __future__ import annotations

import ssl

import aiohttp

from chatprovider.domain.transport_failure import TransportFailure
from chatprovider.domain.transport_failure import TransportFailureKind as Kind
from chatprovider.upstream.connection import (
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamDNSError,
    UpstreamProxyError,
)
from chatprovider.upstream.transport import EgressDenied

__all__ = ["classify"]


def classify(exc: BaseException) -> TransportFailure:
    """The failure ``exc`` stands for, most specific first. The exception's own message is
    never kept (it may hold a URL or a header); the egress policy's is (it names an address)."""
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, EgressDenied):
            return TransportFailure(Kind.EGRESS_DENIED, str(e))
    for e in chain:
        if isinstance(e, aiohttp.ClientConnectorCertificateError):
            e = e.certificate_error  # aiohttp's wrapper subclasses ssl.CertificateError
        if isinstance(e, ssl.SSLCertVerificationError):
            msg = str(getattr(e, "verify_message", None) or e).lower()
            if getattr(e, "verify_code", None) == 62 or "hostname" in msg or \
                    "ip address mismatch" in msg:
                return TransportFailure(Kind.TLS_HOSTNAME_MISMATCH,
                                        f"certificate does not match the host: {msg}")
            return TransportFailure(Kind.TLS_UNKNOWN_AUTHORITY, f"certificate not trusted: {msg}")
    if isinstance(exc, aiohttp.ClientProxyConnectionError | UpstreamProxyError):
        return TransportFailure(Kind.PROXY, "could not connect through the proxy")
    if isinstance(exc, aiohttp.ClientConnectorDNSError | UpstreamDNSError):
        return TransportFailure(Kind.DNS, "the host name could not be resolved")
    if any(isinstance(e, aiohttp.ClientSSLError | ssl.SSLError) for e in chain):
        return TransportFailure(Kind.TLS, f"TLS handshake failed ({type(exc).__name__})")
    if isinstance(exc, aiohttp.ConnectionTimeoutError | UpstreamConnectTimeout):
        return TransportFailure(Kind.CONNECT_TIMEOUT, "no connection within the timeout")
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return TransportFailure(Kind.REFUSED, "connection refused")
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return TransportFailure(Kind.TIMEOUT, "no answer within the timeout")
    if isinstance(exc, aiohttp.ClientConnectorError | UpstreamConnectError):
        return TransportFailure(Kind.CONNECT_FAILED,
                                f"could not connect ({exc.os_error.strerror or 'error'})")
    return TransportFailure(Kind.DISCONNECTED, f"connection failed ({type(exc).__name__})")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, the OS error a connector error wraps, and the exceptions it was raised from or
    during, without cycles."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        if isinstance(cur, aiohttp.ClientConnectorError | UpstreamConnectError) and \
                cur.os_error not in seen:
            seen.append(cur.os_error)
        cur = cur.__cause__ or cur.__context__
    return seen
