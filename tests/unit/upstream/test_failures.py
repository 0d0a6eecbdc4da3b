"""One classifier for prober and relay: each client exception names one failure, and the
condition reason and the relay's error code both follow from it."""

from __future__ import annotations

import ssl

import aiohttp
import pytest

from chatprovider.domain.conditions import Reason
from chatprovider.domain.openai_errors import UpstreamFailureKind
from chatprovider.domain.transport_failure import TransportFailureKind as Kind
from chatprovider.upstream import EgressDenied
from chatprovider.upstream.connection import (
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamDisconnected,
    UpstreamDNSError,
    UpstreamProxyError,
)
from chatprovider.upstream.failures import classify

KEY = aiohttp.client_reqrep.ConnectionKey("h", 443, True, True, None, None, None)


def _raised_from(exc: BaseException, cause: BaseException) -> BaseException:
    try:
        raise exc from cause
    except BaseException as e:  # noqa: BLE001 - building a chain
        return e


def _cert_error(message: str, code: int) -> ssl.SSLCertVerificationError:
    err = ssl.SSLCertVerificationError(1, message)
    err.verify_message, err.verify_code = message, code
    return err


@pytest.mark.parametrize(("exc", "kind"), [
    (_raised_from(aiohttp.ClientConnectionError(), EgressDenied("10.0.0.1 is denied")),
     Kind.EGRESS_DENIED),
    (aiohttp.ClientConnectorCertificateError(KEY, _cert_error("Hostname mismatch", 62)),
     Kind.TLS_HOSTNAME_MISMATCH),
    (aiohttp.ClientConnectorCertificateError(KEY, _cert_error("self-signed certificate", 18)),
     Kind.TLS_UNKNOWN_AUTHORITY),
    (aiohttp.ClientProxyConnectionError(KEY, OSError(111, "refused")), Kind.PROXY),
    (aiohttp.ClientConnectorDNSError(KEY, OSError(-2, "Name does not resolve")), Kind.DNS),
    (aiohttp.ClientConnectorSSLError(KEY, ssl.SSLError(1, "handshake")), Kind.TLS),
    (aiohttp.ConnectionTimeoutError(), Kind.CONNECT_TIMEOUT),
    (aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "refused")), Kind.REFUSED),
    (TimeoutError(), Kind.TIMEOUT),
    (aiohttp.ClientConnectorError(KEY, OSError(113, "No route to host")), Kind.CONNECT_FAILED),
    (aiohttp.ServerDisconnectedError(), Kind.DISCONNECTED),
    # the relay's own client (chatprovider.upstream.pool)
    (_raised_from(UpstreamConnectError(OSError(1, "x")), EgressDenied("10.0.0.1 is denied")),
     Kind.EGRESS_DENIED),
    (_cert_error("Hostname mismatch", 62), Kind.TLS_HOSTNAME_MISMATCH),
    (_cert_error("unable to get local issuer certificate", 20), Kind.TLS_UNKNOWN_AUTHORITY),
    (UpstreamProxyError(111, "could not connect to the proxy"), Kind.PROXY),
    (UpstreamDNSError(-2, "the host name could not be resolved"), Kind.DNS),
    (ssl.SSLError(1, "handshake"), Kind.TLS),
    (UpstreamConnectTimeout(), Kind.CONNECT_TIMEOUT),
    (UpstreamConnectError(ConnectionRefusedError(111, "refused")), Kind.REFUSED),
    (UpstreamConnectError(OSError(113, "No route to host")), Kind.CONNECT_FAILED),
    (UpstreamDisconnected(before_response=True), Kind.DISCONNECTED),
])
def test_each_client_exception_names_one_failure(exc: BaseException, kind: Kind) -> None:
    assert classify(exc).kind is kind


def test_the_message_never_carries_the_exceptions_own_text() -> None:
    exc = aiohttp.ClientResponseError(None, (), message="Bearer sk-secret at https://x/?k=v")  # type: ignore[arg-type]
    assert "sk-secret" not in classify(exc).detail


def test_every_failure_has_a_condition_reason_and_a_relay_error() -> None:
    for kind in Kind:
        assert isinstance(kind.reason, Reason)
        assert isinstance(kind.upstream_failure, UpstreamFailureKind)
    assert Kind.TIMEOUT.upstream_failure is UpstreamFailureKind.FIRST_BYTE_TIMEOUT
    assert Kind.CONNECT_TIMEOUT.reason is Reason.TIMEOUT
