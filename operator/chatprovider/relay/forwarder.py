"""Sending one request upstream over the shared connection pools, and naming what went wrong.

Time limits come from the provider's ``spec.timeouts``: ``connect`` for the TCP/TLS connection,
``connect + request`` until the response headers arrive, then ``streamIdle`` for every read of
the body. There is no total cap: a stream that keeps producing is never cut.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence

import aiohttp

from chatprovider.domain.openai_errors import UpstreamFailure, UpstreamFailureKind
from chatprovider.relay.target import Target
from chatprovider.upstream.transport import EgressDenied, Transports

__all__ = ["Forwarder", "classify"]

Kind = UpstreamFailureKind


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def classify(exc: BaseException, provider: str) -> UpstreamFailure:
    """The failure an aiohttp/OS exception stands for (its message is not kept: it may hold a
    URL or a header)."""
    chain = _chain(exc)
    if any(isinstance(e, EgressDenied) for e in chain):
        return UpstreamFailure(Kind.EGRESS_DENIED, provider)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return UpstreamFailure(Kind.PROXY, provider)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return UpstreamFailure(Kind.DNS, provider)
    if isinstance(exc, aiohttp.ClientSSLError) or any(
            isinstance(e, ssl.SSLError) for e in chain):
        return UpstreamFailure(Kind.TLS, provider)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamFailure(Kind.CONNECT_TIMEOUT, provider)
    if isinstance(exc, aiohttp.ClientConnectorError):
        if any(isinstance(e, ConnectionRefusedError) for e in chain):
            return UpstreamFailure(Kind.REFUSED, provider)
        return UpstreamFailure(Kind.CONNECT_FAILED, provider)
    if isinstance(exc, TimeoutError):
        return UpstreamFailure(Kind.FIRST_BYTE_TIMEOUT, provider)
    return UpstreamFailure(Kind.DISCONNECTED, provider)


class Forwarder:
    """Opens upstream requests; the caller reads the body and closes the response."""

    def __init__(self, transports: Transports) -> None:
        self._transports = transports

    async def open(self, target: Target, body: bytes,
                   headers: Sequence[tuple[str, str]]) -> aiohttp.ClientResponse:
        """Send the request and wait for the response headers; raises UpstreamFailure."""
        timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=target.connect,
                                        sock_read=None)
        try:
            self._transports.check_destination(target.host, target.profile)
            session = self._transports.session(target.profile)
            async with asyncio.timeout(target.connect + target.first_byte):
                return await session.post(target.url, data=body, headers=list(headers),
                                          timeout=timeout, allow_redirects=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified; the message is not kept
            raise classify(exc, target.provider) from None
