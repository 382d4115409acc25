"""What both clients are made of: validated settings and a transport, built for the API the
address names or given ready-made."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import ClassVar, Generic, TypeVar, cast

from cerebelum_provider._core import CORE_DEFAULT_GRPC_PORT, DEFAULT_CALL_TIMEOUT
from cerebelum_provider.client.config import ClientSettings, CoreAPI, RetryConfig, TLSConfig
from cerebelum_provider.client.transport import AsyncTransport, SyncTransport
from cerebelum_provider.exceptions import UnsupportedOperationError

TransportT = TypeVar("TransportT", bound="AsyncTransport | SyncTransport")

DEFAULT_CORE_URL = f"localhost:{CORE_DEFAULT_GRPC_PORT}"


class ClientBase(Generic[TransportT]):
    """Settings, the transport built from them (or given), the address and a token-free ``repr()``."""

    #: The transport class for each API, built from the address when no transport is given.
    transport_classes: ClassVar[Mapping[CoreAPI, Callable[[ClientSettings], AsyncTransport | SyncTransport]]]
    #: True when the transport's ``call`` and ``close`` are coroutines (``ExecutionClient``).
    transport_is_async: ClassVar[bool]

    def __init__(
        self,
        core_url: str = DEFAULT_CORE_URL,
        *,
        tls: bool | TLSConfig | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_CALL_TIMEOUT,
        retry: RetryConfig | None = None,
        transport: TransportT | None = None,
    ) -> None:
        self._settings: ClientSettings | None = None
        if transport is None:
            self._settings = ClientSettings.build(
                core_url, tls=tls, token=token, timeout=timeout, retry=retry
            )
            built = self.transport_classes[self._settings.address.api](self._settings)
            self._transport: TransportT = cast(TransportT, built)
            return
        given = {
            "core_url": core_url != DEFAULT_CORE_URL,
            "tls": tls is not None,
            "token": token is not None,
            "timeout": timeout != DEFAULT_CALL_TIMEOUT,
            "retry": retry is not None,
        }
        if any(given.values()):
            # The token's value is a secret: name the arguments, never echo them.
            raise ValueError(
                f"{type(self).__name__} got transport= together with "
                f"{', '.join(name for name, is_given in given.items() if is_given)}: a transport carries "
                "its own address and settings, so give either a transport or those arguments"
            )
        self._transport = self._check_transport(transport)

    def _check_transport(self, transport: TransportT) -> TransportT:
        protocol = AsyncTransport if self.transport_is_async else SyncTransport
        if not isinstance(transport, protocol) or (
            inspect.iscoroutinefunction(transport.call) is not self.transport_is_async
        ):
            raise TypeError(
                f"{type(self).__name__} needs a transport= that implements "
                f"cerebelum_provider.client.transport.{protocol.__name__} (api, address, "
                f"{'async ' if self.transport_is_async else ''}call and close), got "
                f"{type(transport).__name__}"
            )
        if not isinstance(transport.api, CoreAPI):
            raise TypeError(
                f"the transport's api must be a CoreAPI, got {type(transport.api).__name__} {transport.api!r}"
            )
        return transport

    @property
    def address(self) -> str:
        """Where this client talks to Core, as error messages name it: ``host:port`` for gRPC, the
        base URL for the REST API."""
        return self._transport.address

    @property
    def api(self) -> CoreAPI:
        """Which of Core's APIs this client speaks (``CoreAPI.GRPC`` or ``CoreAPI.HTTP``): its
        transport's."""
        return self._transport.api

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
        if self._settings is None:
            return f"{type(self).__name__}({self.address!r}, transport={type(self._transport).__name__})"
        auth = ", token=***" if self._settings.token else ""
        return f"{type(self).__name__}({self.address!r}, tls={self._settings.tls is not None}{auth})"
