"""Sending one request upstream over the shared connection pools, and naming what went wrong.

Time limits come from the provider's ``spec.timeouts``: ``connect`` for the TCP/TLS connection,
``connect + request`` until the response headers arrive, then ``streamIdle`` for every read of
the body. There is no total cap: a stream that keeps producing is never cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from chatprovider.domain.openai_errors import UpstreamFailure
from chatprovider.relay.target import Target
from chatprovider.upstream.connection import UpstreamResponse
from chatprovider.upstream.failures import classify
from chatprovider.upstream.transport import Transports

__all__ = ["Forwarder"]


class Forwarder:
    """Opens upstream requests; the caller reads the body and releases or closes the answer."""

    def __init__(self, transports: Transports) -> None:
        self._transports = transports

    async def open(self, target: Target, body: bytes,
                   headers: Sequence[tuple[str, str]]) -> UpstreamResponse:
        """Send the request and wait for the response headers; raises UpstreamFailure."""
        try:
            self._transports.check_destination(target.host, target.profile)
            pool = self._transports.pool(target.profile)
            return await pool.post(target.url, headers, body, target.connect,
                                   headers_timeout=target.connect + target.first_byte)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified; the message is not kept
            raise UpstreamFailure(classify(exc).kind.upstream_failure, target.provider) from None
