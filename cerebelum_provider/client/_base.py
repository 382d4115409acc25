"""What both clients are made of: validated settings and a transport; only the transport differs."""

from __future__ import annotations

from typing import Any, ClassVar

from cerebelum_provider.client.config import ClientSettings, RetryConfig, TLSConfig


class ClientBase:
    """Settings, the transport built from them, the dialled address and a token-free ``repr()``."""

    #: ``AsyncTransport`` or ``SyncTransport``: set by each client class.
    transport_class: ClassVar[type[Any]]

    def __init__(
        self,
        core_url: str = "localhost:9090",
        *,
        tls: bool | TLSConfig | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        retry: RetryConfig | None = None,
    ) -> None:
        self._settings = ClientSettings.build(core_url, tls=tls, token=token, timeout=timeout, retry=retry)
        self._transport = self.transport_class(self._settings)

    @property
    def address(self) -> str:
        """The ``host:port`` this client dials (as named in error messages)."""
        return self._transport.address

    def __repr__(self) -> str:
        auth = ", token=***" if self._settings.token else ""
        return f"{type(self).__name__}({self.address!r}, tls={self._settings.tls is not None}{auth})"
