"""Test certificates made on the fly with ``cryptography``: a CA, a server cert, a client cert."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TLSMaterial:
    """PEM bytes: a CA, a server cert (localhost, 127.0.0.1) and a client cert it signed."""

    ca_pem: bytes
    server_cert_pem: bytes
    server_key_pem: bytes
    client_cert_pem: bytes
    client_key_pem: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, public_key, signing_key, *, ca=False, usage=None, sans=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signing_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def make_tls_material() -> TLSMaterial:
    """A fresh CA with a server certificate for localhost/127.0.0.1 and a client certificate."""
    ca_key, server_key, client_key = _key(), _key(), _key()
    ca_name = _name("cerebelum test CA")
    ca_pem = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    server_pem = _certificate(
        _name("localhost"),
        ca_name,
        server_key.public_key(),
        ca_key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client_pem = _certificate(
        _name("cerebelum test client"),
        ca_name,
        client_key.public_key(),
        ca_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    return TLSMaterial(ca_pem, server_pem, _pem_key(server_key), client_pem, _pem_key(client_key))
