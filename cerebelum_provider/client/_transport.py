"""Channels, credentials, deadlines, retries and error mapping: the only module that sends.

Both transports take an :class:`~cerebelum_provider.client._operations.Operation` and return
its converted answer. They own one lazily created channel each, reused by every call; retries
happen here and nowhere else, with one tenacity policy built from the client's ``RetryConfig``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import grpc.aio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from cerebelum_provider.client._operations import Operation
from cerebelum_provider.client.config import ClientSettings, RetryConfig, TLSConfig
from cerebelum_provider.exceptions import (
    CerebelumAuthError,
    CerebelumError,
    CerebelumRPCError,
    CerebelumTLSError,
    CoreUnavailableError,
    ExecutionNotFoundError,
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

    def credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials (server verification, plus a client certificate for mTLS)."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


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


def retry_policy(config: RetryConfig, operation: Operation[Any], address: str) -> dict[str, Any]:
    """Keyword arguments for tenacity's ``Retrying``/``AsyncRetrying``: the one retry policy.

    Transient gRPC failures are retried with exponential backoff and jitter until
    ``config.max_attempts`` calls were made; everything else, TLS handshake failures included,
    is raised at once. An operation that is not idempotent gets exactly one attempt. Each retry
    is logged at WARNING (RPC, address, code; never metadata).
    """
    max_attempts = config.max_attempts if operation.idempotent else 1

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        code = _code(error) if isinstance(error, grpc.RpcError) else None
        log.warning(
            "%s to Cerebelum Core at %s failed with %s (attempt %d of %d); retrying in %.2f s",
            operation.rpc,
            address,
            code.name if code is not None else error,
            state.attempt_number,
            max_attempts,
            state.upcoming_sleep,
        )

    return {
        "before_sleep": log_retry,
        "stop": stop_after_attempt(max_attempts),
        # initial * multiplier ** (n - 1), capped, plus up to one initial backoff of jitter;
        # composed from the two oldest tenacity waits so that every tenacity >= 8.2 works.
        "wait": wait_exponential(
            multiplier=config.initial_backoff, max=config.max_backoff, exp_base=config.multiplier
        )
        + wait_random(0, config.initial_backoff),
        "retry": retry_if_exception(is_retryable),
        "reraise": True,
    }


def is_tls_failure(error: grpc.RpcError) -> bool:
    """True when gRPC reports a failed TLS handshake (it says UNAVAILABLE, with telling details)."""
    if _code(error) != grpc.StatusCode.UNAVAILABLE:
        return False
    details = (_details(error) or "").lower()
    return any(marker in details for marker in _TLS_FAILURE_MARKERS)


def is_retryable(error: BaseException) -> bool:
    """True for a transient gRPC failure that another attempt may cure."""
    return isinstance(error, grpc.RpcError) and _code(error) in TRANSIENT_CODES and not is_tls_failure(error)


def map_error(error: grpc.RpcError, operation: Operation[Any], address: str, attempts: int) -> CerebelumError:
    """The ``CerebelumError`` for a gRPC failure of ``operation`` after ``attempts`` calls."""
    code = _code(error)
    details = _details(error) or "no details"
    context = {"core_address": address, "execution_id": operation.execution_id, "code": code}
    code_name = code.name if code is not None else "UNKNOWN"
    about = f" about execution {operation.execution_id!r}" if operation.execution_id else ""
    if code in _AUTH_CODES:
        return CerebelumAuthError(
            f"Cerebelum Core at {address} refused {operation.rpc}{about}: {code_name} ({details}); "
            "check the token and the proxy's access rules",
            **context,
        )
    if code == grpc.StatusCode.NOT_FOUND and operation.execution_id:
        return ExecutionNotFoundError(
            f"Cerebelum Core at {address} knows no execution {operation.execution_id!r} "
            f"({operation.rpc}: NOT_FOUND, {details})",
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
            f"Cerebelum Core at {address} did not answer {operation.rpc}{about} after {tries}: "
            f"{code_name} ({details})",
            **context,
        )
    return CerebelumRPCError(
        f"{operation.rpc}{about} failed at {address}: {code_name} ({details})", **context
    )


def _code(error: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(error, "code", None)
    return code() if callable(code) else None


def _details(error: grpc.RpcError) -> str | None:
    details = getattr(error, "details", None)
    return details() if callable(details) else None


class _TransportBase:
    """What both transports share: settings, TLS material and per-call metadata."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.address = settings.address.target
        # Read at construction, so a wrong path fails here rather than on the first call.
        self._tls = TLSMaterial.load(settings.tls) if settings.tls is not None else None
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {settings.token}"),) if settings.token else ()
        )
        options = list(CHANNEL_OPTIONS)
        if self._tls is not None and self._tls.server_name_override:
            options.append(("grpc.ssl_target_name_override", self._tls.server_name_override))
        self._options = options

    def _error(self, error: grpc.RpcError, operation: Operation[Any], attempts: int) -> CerebelumError:
        return map_error(error, operation, self.address, attempts)


class AsyncTransport(_TransportBase):
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
                    self.address, self._tls.credentials(), options=self._options
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
        stub = self._ensure_stub()
        method = getattr(stub, operation.rpc)
        # The first attempt goes out without tenacity: building and running a retry loop costs
        # more CPU than the call itself, and thousands of triggers poll through here. A failed
        # first attempt is replayed as attempt 1 of the tenacity loop, so the policy is unchanged.
        try:
            response = await method(operation.request, timeout=self.settings.timeout, metadata=self._metadata)
        except grpc.RpcError as first_error:
            pending: grpc.RpcError | None = first_error
        else:
            return operation.convert(response, self.address)
        attempts = 0
        try:
            async for attempt in AsyncRetrying(**retry_policy(self.settings.retry, operation, self.address)):
                with attempt:
                    attempts += 1
                    if pending is not None:
                        replayed, pending = pending, None
                        raise replayed
                    response = await method(
                        operation.request, timeout=self.settings.timeout, metadata=self._metadata
                    )
        except grpc.RpcError as error:
            raise self._error(error, operation, attempts) from None
        return operation.convert(response, self.address)

    async def close(self) -> None:
        """Close the channel; the next call opens a new one."""
        channel, self._channel, self._stub, self._loop = self._channel, None, None, None
        if channel is not None:
            await channel.close()


class SyncTransport(_TransportBase):
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
                        self.address, self._tls.credentials(), options=self._options
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
        method = getattr(self._ensure_stub(), operation.rpc)
        attempts = 0
        try:
            for attempt in Retrying(**retry_policy(self.settings.retry, operation, self.address)):
                with attempt:
                    attempts += 1
                    response = method(
                        operation.request, timeout=self.settings.timeout, metadata=self._metadata
                    )
        except grpc.RpcError as error:
            raise self._error(error, operation, attempts) from None
        return operation.convert(response, self.address)

    def close(self) -> None:
        """Close the channel; the next call opens a new one."""
        with self._lock:
            channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()
