"""The OpenAI-compatible relay to ChatProviders (aiohttp.web).

Public API: :class:`Relay` (embed it in any event loop), :class:`RelaySettings`,
:class:`AuthMode`, :class:`BareModelPolicy`. Logging is configured by the process
(:func:`chatprovider.logs.setup_logging`); the relay logs under ``chatprovider.relay``.

Layers: wire format (:mod:`chatprovider.domain.request_body`, :mod:`chatprovider.domain.sse`,
:mod:`chatprovider.domain.headers`), routing (:mod:`chatprovider.domain.routing`), errors
(:mod:`chatprovider.domain.openai_errors`, rendered by :mod:`.middleware` only), transport
(:mod:`.forwarder`, :mod:`.answer`, :mod:`.streaming` over
:class:`~chatprovider.upstream.transport.Transports`).
"""

from chatprovider.relay.server import Relay
from chatprovider.settings import AuthMode, BareModelPolicy, RelaySettings

__all__ = [
    "AuthMode",
    "BareModelPolicy",
    "Relay",
    "RelaySettings",
]
