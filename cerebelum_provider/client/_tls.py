"""TLS material read from a ``TLSConfig``, for either transport; pure Python, no grpc import."""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from cerebelum_provider.client.config import TLSConfig


@dataclass(frozen=True)
class TLSMaterial:
    """PEM bytes from a ``TLSConfig``'s paths or PEM options; never shown in ``repr()``."""

    root_certificates: bytes | None = field(default=None, repr=False)
    certificate_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    server_name_override: str | None = None

    @classmethod
    def load(cls, config: TLSConfig) -> TLSMaterial:
        """Read every file the config names, and take the PEM it gives inline.

        Raises:
            ValueError: a file cannot be read or is empty; the message names the path.
        """
        return cls(
            root_certificates=_pem("ca_cert", config.ca_cert_path, config.ca_cert_pem),
            certificate_chain=_pem("client_cert", config.client_cert_path, config.client_cert_pem),
            private_key=_pem("client_key", config.client_key_path, config.client_key_pem),
            server_name_override=config.server_name_override,
        )


def ssl_context(config: TLSConfig) -> ssl.SSLContext:
    """An ``SSLContext`` that verifies Core (system roots, or the configured CA) and, for mutual
    TLS, presents the client certificate.

    Raises:
        ValueError: a file cannot be read, is empty, or is not the PEM it should be; the message
            names the option (and the path, never inline PEM).
    """
    material = TLSMaterial.load(config)
    context = ssl.create_default_context()
    if material.root_certificates is not None:
        try:
            context = ssl.create_default_context(cadata=material.root_certificates.decode("ascii", "replace"))
        except ssl.SSLError as exc:
            where = repr(config.ca_cert_path) if config.ca_cert_path else "the PEM given"
            raise ValueError(f"TLSConfig.ca_cert: {where} holds no usable PEM certificate ({exc})") from None
    if material.certificate_chain is not None and material.private_key is not None:
        try:
            with _cert_chain_files(config, material) as (certfile, keyfile):
                context.load_cert_chain(certfile=certfile, keyfile=keyfile)
        except (ssl.SSLError, OSError) as exc:
            paths = (config.client_cert_path, config.client_key_path)
            where = " and ".join(repr(path) if path else "the PEM given" for path in paths)
            raise ValueError(
                f"TLSConfig.client_cert/client_key: {where} are not a matching PEM certificate and key "
                f"({exc})"
            ) from None
    return context


@contextlib.contextmanager
def _cert_chain_files(config: TLSConfig, material: TLSMaterial) -> Iterator[tuple[str, str]]:
    """The client certificate and key as files, as ``ssl`` loads them only from files.

    Given paths are used as they are. Inline PEM goes to a private temporary file (mode 0600, made
    by ``mkstemp``) that is removed as soon as ``ssl`` has read it: the key then lives only in the
    context's memory, and no extra library is needed to hand ``ssl`` a key from memory.
    """
    with contextlib.ExitStack() as stack:
        certfile = config.client_cert_path or stack.enter_context(_private_file(material.certificate_chain))
        keyfile = config.client_key_path or stack.enter_context(_private_file(material.private_key))
        yield certfile, keyfile


@contextlib.contextmanager
def _private_file(data: bytes | None) -> Iterator[str]:
    handle, path = tempfile.mkstemp(prefix="cerebelum-tls-", suffix=".pem")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data or b"")
        yield path
    finally:
        os.unlink(path)


def _pem(option: str, path: str | None, pem: str | bytes | None) -> bytes | None:
    if pem is not None:
        return pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ValueError(f"TLSConfig.{option}_path: cannot read {path!r}: {exc.strerror or exc}") from exc
    if not data.strip():
        raise ValueError(f"TLSConfig.{option}_path: {path!r} is empty; expected PEM data")
    return data
