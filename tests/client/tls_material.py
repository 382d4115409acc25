"""Certificates generated for a test run (cryptography): a CA, a server and a client certificate."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(name: str = "Test CA") -> tuple[Issued, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA: its PEMs, key and certificate."""
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)), key, cert


def issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    *,
    dns_names: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    client: bool = False,
) -> Issued:
    """A leaf certificate signed by the CA (server by default, client when ``client``)."""
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    names = [x509.DNSName(name) for name in dns_names] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips
    ]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


@dataclass(frozen=True)
class TLSFiles:
    """Everything the TLS tests need, PEMs in memory and on disk."""

    ca: Issued
    other_ca: Issued
    server: Issued  # valid for 127.0.0.1 and localhost
    named_server: Issued  # valid only for core.internal
    client: Issued
    ca_path: str
    other_ca_path: str
    client_cert_path: str
    client_key_path: str


def write_tls_files(folder: Path) -> TLSFiles:
    """Generate the CAs and certificates and write the client-side files into ``folder``."""
    ca, ca_key, ca_cert = make_ca()
    other_ca, _, _ = make_ca("Other CA")
    server = issue(ca_key, ca_cert, "core", dns_names=("localhost",), ips=("127.0.0.1",))
    named_server = issue(ca_key, ca_cert, "core.internal", dns_names=("core.internal",))
    client = issue(ca_key, ca_cert, "airflow-worker", client=True)
    paths = {}
    for name, data in {
        "ca.pem": ca.cert_pem,
        "other-ca.pem": other_ca.cert_pem,
        "client.pem": client.cert_pem,
        "client-key.pem": client.key_pem,
    }.items():
        (folder / name).write_bytes(data)
        paths[name] = str(folder / name)
    return TLSFiles(
        ca=ca,
        other_ca=other_ca,
        server=server,
        named_server=named_server,
        client=client,
        ca_path=paths["ca.pem"],
        other_ca_path=paths["other-ca.pem"],
        client_cert_path=paths["client.pem"],
        client_key_path=paths["client-key.pem"],
    )
