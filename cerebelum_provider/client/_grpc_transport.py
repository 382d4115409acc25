"""Core's gRPC API: channels, credentials, deadlines, retries and the mapping of gRPC errors.

Both transports here take an :class:`~cerebelum_provider.client._operations.Operation`, send its
gRPC form and return its converted answer. They own one lazily created channel each, reused by
every call; retries follow the one policy of ``_retry``. Their REST twins are in ``_http_transport``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import grpc
import grpc.aio

from cerebelum_provider._core import CORE_DEFAULT_GRPC_PORT, TESTED_CORE_RELEASE
from cerebelum_provider.client import _deadline, _retry
from cerebelum_provider.client._operations import GrpcCall, Operation
from cerebelum_provider.client._tls import TLSMaterial
from cerebelum_provider.client.config import ClientSettings, CoreAPI, RetryConfig
from cerebelum_provider.exceptions import (
    CerebelumAuthError,
    CerebelumError,
    CerebelumRPCError,
    CerebelumTLSError,
    CoreAPIMismatchError,
    CoreInternalError,
    CoreUnavailableError,
    ErrorCode,
    ExecutionNotFoundError,
    UnsupportedOperationError,
)
from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

T = TypeVar("T")
log = logging.getLogger("cerebelum_provider.client")

#: Codes worth another attempt: Core restarting, slow, or shedding load. CANCELLED is here
#: because this client never cancels a call itself (a caller's cancellation surfaces as
#: asyncio.CancelledError, not as a status): a CANCELLED status comes from the far side, e.g. a
#: server or proxy resetting streams when thousands of calls share one connection.
TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
    }
)
_AUTH_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
# Phrases gRPC puts in an UNAVAILABLE's details when the TLS handshake, not the network, failed.
# Specific on purpose: a bare "ssl" or "tls" would match host names such as "tls-gw.example".
_TLS_FAILURE_MARKERS = (
    "handshake failed",
    "tsi_",
    "ssl_error",
    "certificate_verify_failed",
    "verification check failed",
)
# What gRPC says when the address answers plain HTTP, as Core's REST port does: an HTTP/2 server
# (the real Core's Phoenix) answers the gRPC path with a 404, an HTTP/1.1-only one fails gRPC's
# handshake. Only a 404: a gateway's 503 during a restart is an outage, and is retried.
_HTTP_SERVER_MARKERS = ("received http2 header with status: 404", "trying to connect an http1.x server")

# Keepalive pings while calls are in flight make a half-open connection (peer gone without a
# FIN) fail within keepalive_time + keepalive_timeout; setting keepalive_time also makes gRPC
# set TCP_USER_TIMEOUT, so data stuck unacknowledged fails the socket too. No pings on an idle
# channel: servers refuse frequent idle pings (GOAWAY too_many_pings) by default.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.primary_user_agent", "cerebelum-provider"),
)


def channel_credentials(material: TLSMaterial) -> grpc.ChannelCredentials:
    """The channel credentials (server verification, plus a client certificate for mTLS)."""
    return grpc.ssl_channel_credentials(
        root_certificates=material.root_certificates,
        private_key=material.private_key,
        certificate_chain=material.certificate_chain,
    )


def retry_policy(
    config: RetryConfig,
    operation: Operation[Any],
    address: str,
    lines: _retry.FailureLines | None = None,
) -> dict[str, Any]:
    """tenacity's keyword arguments for a gRPC call: transient codes retried, TLS failures not."""
    return _retry.retry_policy(
        config, operation, address, is_retryable=is_retryable, describe=_describe, lines=lines
    )


def _describe(error: BaseException) -> str:
    code = _code(error) if isinstance(error, grpc.RpcError) else None
    return code.name if code is not None else str(error)


def is_tls_failure(error: grpc.RpcError) -> bool:
    """True when gRPC reports a failed TLS handshake (it says UNAVAILABLE, with telling details)."""
    if _code(error) != grpc.StatusCode.UNAVAILABLE:
        return False
    details = (_details(error) or "").lower()
    return any(marker in details for marker in _TLS_FAILURE_MARKERS)


def is_http_server(error: grpc.RpcError) -> bool:
    """True when the address answered as a plain HTTP server (Core's REST port), not gRPC."""
    details = (_details(error) or "").lower()
    return any(marker in details for marker in _HTTP_SERVER_MARKERS)


def is_retryable(error: BaseException) -> bool:
    """True for a transient gRPC failure that another attempt may cure."""
    return (
        isinstance(error, grpc.RpcError)
        and _code(error) in TRANSIENT_CODES
        and not is_tls_failure(error)
        and not is_http_server(error)
    )


def is_internal_crash(error: grpc.RpcError) -> bool:
    """True for Core's crashed handler: ``UNKNOWN`` with details ``"Internal Server Error"``."""
    return (
        _code(error) == grpc.StatusCode.UNKNOWN and "internal server error" in (_details(error) or "").lower()
    )


def map_error(
    error: grpc.RpcError, operation: Operation[Any], address: str, attempts: int, note: str = ""
) -> CerebelumError:
    """The ``CerebelumError`` for a gRPC failure of ``operation`` after ``attempts`` calls; a
    transient one's message ends with ``note`` (why its retries ended early)."""
    code = _code(error)
    details = _details(error) or "no details"
    context: dict[str, Any] = {
        "core_address": address,
        "execution_id": operation.execution_id,
        "transport_code": code,
    }
    code_name = code.name if code is not None else "UNKNOWN"
    about = f" about execution {operation.execution_id!r}" if operation.execution_id else ""
    if is_internal_crash(error):
        # Core's crashed handler says UNKNOWN over gRPC where its REST twin says 500: one meaning.
        return CoreInternalError(_crash_message(operation, address), code=ErrorCode.INTERNAL, **context)
    if is_http_server(error):
        return CoreAPIMismatchError(
            f"Cerebelum Core at {address} answered {operation.name}{about} as an HTTP server, not gRPC "
            f"({code_name}: {details}): this is Core's HTTP (REST) port. Connect with http://HOST:PORT "
            f"(api=http in the Airflow connection), or use Core's gRPC port ({CORE_DEFAULT_GRPC_PORT} by "
            "default)",
            **context,
        )
    if code in _AUTH_CODES:
        return CerebelumAuthError(
            f"Cerebelum Core at {address} refused {operation.name}{about}: {code_name} ({details}); "
            "check the token and the proxy's access rules",
            **context,
        )
    if code == grpc.StatusCode.NOT_FOUND and operation.execution_id:
        return ExecutionNotFoundError(
            f"Cerebelum Core at {address} knows no execution {operation.execution_id!r} "
            f"({operation.name}: NOT_FOUND, {details})",
            **context,
        )
    if is_tls_failure(error):
        return CerebelumTLSError(
            f"TLS handshake with Cerebelum Core at {address} failed ({details}); check the CA "
            "bundle, the client certificate and the server name",
            **context,
        )
    if code in TRANSIENT_CODES:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        return CoreUnavailableError(
            f"Cerebelum Core at {address} did not answer {operation.name}{about} after {tries}: "
            f"{code_name} ({details}){note}",
            **context,
        )
    return CerebelumRPCError(
        f"{operation.name}{about} failed at {address}: {code_name} ({details})", **context
    )


def _crash_message(operation: Operation[Any], address: str) -> str:
    if operation.execution_id:
        what = f"{operation.name} for execution {operation.execution_id!r}"
    else:
        what = f"{operation.name} (a page that was not empty)"
    return (
        f"Cerebelum Core at {address} failed internally answering {what}: UNKNOWN "
        f'"Internal Server Error". The Core releases tested ({TESTED_CORE_RELEASE}) fail every '
        "status query and every non-empty list over gRPC, so this is Core, not the network, and "
        "retrying will not help. Core's HTTP API answers these calls: connect with "
        "http://HOST:HTTP_PORT (api=http in the Airflow connection)."
    )


def _grpc_form(operation: Operation[T], address: str) -> GrpcCall[T]:
    if operation.grpc is None:
        raise UnsupportedOperationError(
            f"{operation.name} is not in Core's gRPC API; it needs Core's HTTP API: connect with "
            "http://HOST:HTTP_PORT or https://... (api=http in the Airflow connection)",
            core_address=address,
            execution_id=operation.execution_id,
        )
    return operation.grpc()


def _code(error: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(error, "code", None)
    return code() if callable(code) else None


def _details(error: grpc.RpcError) -> str | None:
    details = getattr(error, "details", None)
    return details() if callable(details) else None


class _TransportBase:
    """What both transports share: settings, TLS material and per-call metadata."""

    api: CoreAPI = CoreAPI.GRPC

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.address = settings.address.target
        self._failure_lines = _retry.FailureLines()
        # Read at construction, so a wrong path fails here rather than on the first call.
        self._tls = TLSMaterial.load(settings.tls) if settings.tls is not None else None
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {settings.token}"),) if settings.token else ()
        )
        options = list(CHANNEL_OPTIONS)
        if self._tls is not None and self._tls.server_name_override:
            options.append(("grpc.ssl_target_name_override", self._tls.server_name_override))
        self._options = options

    def _error(self, error: BaseException, operation: Operation[Any], attempts: int) -> CerebelumError:
        # send_with_retries gives back only the failures it was told of: grpc.RpcError here.
        return map_error(
            cast(grpc.RpcError, error), operation, self.address, attempts, _deadline.ended_note()
        )

    def _policy(self, operation: Operation[Any]) -> Callable[[], dict[str, Any]]:
        return lambda: retry_policy(self.settings.retry, operation, self.address, self._failure_lines)


class AsyncGrpcTransport(_TransportBase):
    """Sends operations over one ``grpc.aio`` channel, created on first use in the running loop."""

    def __init__(self, settings: ClientSettings) -> None:
        super().__init__(settings)
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.WorkerServiceStub | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ensure_stub(self) -> pb_grpc.WorkerServiceStub:
        loop = asyncio.get_running_loop()
        if self._stub is None:
            if self._tls is not None:
                channel = grpc.aio.secure_channel(
                    self.address, channel_credentials(self._tls), options=self._options
                )
            else:
                channel = grpc.aio.insecure_channel(self.address, options=self._options)
            self._channel, self._stub, self._loop = channel, pb_grpc.WorkerServiceStub(channel), loop
        elif loop is not self._loop:
            # A grpc.aio channel belongs to the loop it was made in; using it elsewhere hangs.
            raise RuntimeError(
                "this ExecutionClient was first used in another event loop; create one client per loop"
            )
        return self._stub

    async def call(self, operation: Operation[T]) -> T:
        """Send ``operation`` (retrying transient failures) and return its converted answer.

        Raises:
            CerebelumError: the mapped gRPC failure, or the converter's error for an OK answer.
        """
        call = _grpc_form(operation, self.address)
        method = getattr(self._ensure_stub(), call.rpc)
        # The first attempt is made here, bare: a trigger fleet makes thousands of calls a second,
        # nearly all answered at once, and every object a call keeps alive while it waits brings
        # the next garbage collection closer (bench/RESULTS.md, "where the full collections come
        # from"). Only a failed first attempt builds the retry loop.
        try:
            response = await method(call.request, timeout=self.settings.timeout, metadata=self._metadata)
        except grpc.RpcError as first_error:
            response = await self._retry(first_error, call, method, operation)
        return call.convert(response, self.address)

    async def _retry(
        self, first_error: grpc.RpcError, call: GrpcCall[Any], method: Any, operation: Operation[Any]
    ) -> Any:
        async def send() -> Any:
            timeout = _deadline.retry_timeout(self.settings.timeout)
            return await method(call.request, timeout=timeout, metadata=self._metadata)

        try:
            return await _retry.retry_after(first_error, send, self._policy(operation), (grpc.RpcError,))
        except _retry.RetriesSpent as spent:
            raise self._error(spent.error, operation, spent.attempts) from None

    async def close(self) -> None:
        """Close the channel; the next call opens a new one."""
        channel, self._channel, self._stub, self._loop = self._channel, None, None, None
        if channel is not None:
            await channel.close()


class SyncGrpcTransport(_TransportBase):
    """Sends operations over one blocking gRPC channel, created on first use; thread-safe."""

    def __init__(self, settings: ClientSettings) -> None:
        super().__init__(settings)
        self._channel: grpc.Channel | None = None
        self._stub: pb_grpc.WorkerServiceStub | None = None
        self._lock = threading.Lock()

    def _ensure_stub(self) -> pb_grpc.WorkerServiceStub:
        with self._lock:
            if self._stub is None:
                if self._tls is not None:
                    channel = grpc.secure_channel(
                        self.address, channel_credentials(self._tls), options=self._options
                    )
                else:
                    channel = grpc.insecure_channel(self.address, options=self._options)
                self._channel, self._stub = channel, pb_grpc.WorkerServiceStub(channel)
            return self._stub

    def call(self, operation: Operation[T]) -> T:
        """Send ``operation`` (retrying transient failures) and return its converted answer.

        Raises:
            CerebelumError: the mapped gRPC failure, or the converter's error for an OK answer.
        """
        call = _grpc_form(operation, self.address)
        method = getattr(self._ensure_stub(), call.rpc)

        attempts_sent = 0

        def send() -> Any:
            nonlocal attempts_sent
            timeout = _deadline.attempt_timeout(self.settings.timeout, attempts_sent)
            attempts_sent += 1
            return method(call.request, timeout=timeout, metadata=self._metadata)

        try:
            response = _retry.send_with_retries_blocking(send, self._policy(operation), (grpc.RpcError,))
        except _retry.RetriesSpent as spent:
            raise self._error(spent.error, operation, spent.attempts) from None
        return call.convert(response, self.address)

    def close(self) -> None:
        """Close the channel; the next call opens a new one."""
        with self._lock:
            channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()
