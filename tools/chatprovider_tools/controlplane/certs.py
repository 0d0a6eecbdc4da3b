"""Certificates and keys for a throw-away control plane, made with ``cryptography``."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["PlaneCredentials", "issue", "make_ca", "pem_key", "write_credentials"]


@dataclass(frozen=True)
class PlaneCredentials:
    """Where the generated files live."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    client_ca_cert: Path
    sa_public_key: Path
    sa_private_key: Path


def pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, common_name: str, *,
    organizations: tuple[str, ...] = (), dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (), client: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate signed by ``ca``: for serving (with the given names) or, with
    ``client``, for authenticating as ``common_name`` in ``organizations`` (Kubernetes' user and
    groups)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        # what Python 3.13's strict verification (VERIFY_X509_STRICT) asks of a leaf
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _serving_cert(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return issue(ca, ca_key, "kube-apiserver", dns_names=("localhost",),
                 ip_addresses=("127.0.0.1", "::1"))


def write_credentials(directory: Path) -> PlaneCredentials:
    """Generate a serving CA and certificate, a client CA and a service-account key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = make_ca("chatprovider-test-ca")
    serving, serving_key = _serving_cert(ca, ca_key)
    client_ca, _ = make_ca("chatprovider-test-client-ca")
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    creds = PlaneCredentials(
        ca_cert=directory / "ca.crt",
        serving_cert=directory / "serving.crt",
        serving_key=directory / "serving.key",
        client_ca_cert=directory / "client-ca.crt",
        sa_public_key=directory / "sa.pub",
        sa_private_key=directory / "sa.key",
    )
    pem = serialization.Encoding.PEM
    creds.ca_cert.write_bytes(ca.public_bytes(pem))
    creds.serving_cert.write_bytes(serving.public_bytes(pem))
    creds.serving_key.write_bytes(pem_key(serving_key))
    creds.client_ca_cert.write_bytes(client_ca.public_bytes(pem))
    creds.sa_private_key.write_bytes(pem_key(sa_key))
    creds.sa_public_key.write_bytes(
        sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for p in (creds.serving_key, creds.sa_private_key):
        p.chmod(0o600)
    return creds
