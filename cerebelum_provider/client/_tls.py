"""TLS material read from a ``TLSConfig``, for either transport; pure Python, no grpc import."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from cerebelum_provider.client.config import TLSConfig


@dataclass(frozen=True)
class TLSMaterial:
    """PEM bytes read from a ``TLSConfig``'s paths; never shown in ``repr()``."""

    root_certificates: bytes | None = field(default=None, repr=False)
    certificate_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    server_name_override: str | None = None

    @classmethod
    def load(cls, config: TLSConfig) -> TLSMaterial:
        """Read every file the config names.

        Raises:
            ValueError: a file cannot be read or is empty; the message names the path.
        """
        return cls(
            root_certificates=_read_pem("ca_cert_path", config.ca_cert_path),
            certificate_chain=_read_pem("client_cert_path", config.client_cert_path),
            private_key=_read_pem("client_key_path", config.client_key_path),
            server_name_override=config.server_name_override,
        )


def ssl_context(config: TLSConfig) -> ssl.SSLContext:
    """An ``SSLContext`` that verifies Core (system roots, or the configured CA) and, for mutual
    TLS, presents the client certificate.

    Raises:
        ValueError: a file cannot be read, is empty, or is not the PEM it should be; the message
            names the option and the path.
    """
    material = TLSMaterial.load(config)
    context = ssl.create_default_context()
    if material.root_certificates is not None:
        try:
            context = ssl.create_default_context(cadata=material.root_certificates.decode("ascii", "replace"))
        except ssl.SSLError as exc:
            raise ValueError(
                f"TLSConfig.ca_cert_path: {config.ca_cert_path!r} holds no usable PEM certificate ({exc})"
            ) from None
    if config.client_cert_path is not None and config.client_key_path is not None:
        try:
            context.load_cert_chain(certfile=config.client_cert_path, keyfile=config.client_key_path)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(
                f"TLSConfig.client_cert_path/client_key_path: {config.client_cert_path!r} and "
                f"{config.client_key_path!r} are not a matching PEM certificate and key ({exc})"
            ) from None
    return context


def _read_pem(option: str, path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ValueError(f"TLSConfig.{option}: cannot read {path!r}: {exc.strerror or exc}") from exc
    if not data.strip():
        raise ValueError(f"TLSConfig.{option}: {path!r} is empty; expected PEM data")
    return data
