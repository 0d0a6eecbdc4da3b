"""The control plane's certificates pass strict X.509 verification (Python 3.13 turns
``VERIFY_X509_STRICT`` on by default; a serving certificate without an Authority Key Identifier
fails it), checked here on any Python by setting the flag."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

from chatprovider_tools.controlplane.certs import write_credentials


def test_serving_certificate_verifies_under_strict_x509(tmp_path: Path) -> None:
    creds = write_credentials(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(creds.serving_cert, creds.serving_key)
    client = ssl.create_default_context(cafile=str(creds.ca_cert))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    left, right = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server.wrap_socket(right, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with client.wrap_socket(left, server_hostname="127.0.0.1") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        tls.sendall(b"x")
    thread.join(5)
    assert not errors
