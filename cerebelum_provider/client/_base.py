"""What both clients are made of: validated settings and a transport for the API the address names."""

from __future__ import annotations

from typing import Any, ClassVar

from cerebelum_provider.client.config import ClientSettings, CoreAPI, RetryConfig, TLSConfig
from cerebelum_provider.exceptions import UnsupportedOperationError


class ClientBase:
    """Settings, the transport built from them, the address and a token-free ``repr()``."""

    #: The transport class for each API (async or blocking): set by each client class.
    transport_classes: ClassVar[dict[CoreAPI, type[Any]]]

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
        self._transport = self.transport_classes[self._settings.address.api](self._settings)

    @property
    def address(self) -> str:
        """Where this client talks to Core, as error messages name it: ``host:port`` for gRPC, the
        base URL for the REST API."""
        return self._transport.address

    @property
    def api(self) -> CoreAPI:
        """Which of Core's APIs this client speaks (``CoreAPI.GRPC`` or ``CoreAPI.HTTP``)."""
        return self._settings.address.api

    def require_http(self, what: str, execution_id: str | None = None) -> None:
        """Raise ``UnsupportedOperationError`` naming ``what`` and ``api=http`` unless this client
        speaks Core's HTTP API; for calls that need it before the first one is sent."""
        if self.api is not CoreAPI.HTTP:
            raise UnsupportedOperationError(
                f"{what} needs Core's HTTP API (the execution's event log), which Core's gRPC API at "
                f"{self.address} lacks: connect with http://HOST:HTTP_PORT or https://... (api=http in "
                "the Airflow connection)",
                core_address=self.address,
                execution_id=execution_id,
            )

    def __repr__(self) -> str:
        auth = ", token=***" if self._settings.token else ""
        return f"{type(self).__name__}({self.address!r}, tls={self._settings.tls is not None}{auth})"
