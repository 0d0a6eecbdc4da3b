"""Sending one request upstream over the shared connection pools, and naming what went wrong.

Time limits come from the provider's ``spec.timeouts``: ``connect`` for the TCP/TLS connection,
``connect + request`` until the response headers arrive, then ``streamIdle`` for every read of
the body. There is no total cap: a stream that keeps producing is never cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

import aiohttp

from chatprovider.domain.openai_errors import UpstreamFailure
from chatprovider.relay.target import Target
from chatprovider.upstream.failures import classify
from chatprovider.upstream.transport import Transports

__all__ = ["Forwarder"]


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
            def send() -> Awaitable[aiohttp.ClientResponse]:
                return session.post(target.url, data=body, headers=list(headers),
                                    timeout=timeout, allow_redirects=False)

            async with asyncio.timeout(target.connect + target.first_byte):
                try:
                    return await send()
                except aiohttp.ServerDisconnectedError:
                    # The server closed a kept-alive connection as the request went out on it
                    # (llama-server does after a stream): once more, on a new connection.
                    # aiohttp does this itself for idempotent methods only.
                    return await send()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified; the message is not kept
            raise UpstreamFailure(classify(exc).kind.upstream_failure, target.provider) from None
