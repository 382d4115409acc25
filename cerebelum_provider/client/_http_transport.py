"""Core's REST API: one httpx connection pool per client, deadlines, retries and the mapping of
HTTP failures onto the same error hierarchy as gRPC's.

Both transports here take an :class:`~cerebelum_provider.client._operations.Operation`, send its
REST form and return its converted answer. The mapping, the same on both APIs:

- 401 / 403 -> ``CerebelumAuthError`` (never retried);
- refused connections, timeouts, broken connections, 429, 502, 503, 504 -> retried within the
  client's ``RetryConfig``, then ``CoreUnavailableError``;
- a failed TLS handshake -> ``CerebelumTLSError`` at once;
- 500 -> ``CoreInternalError`` (Core crashed answering; the same call crashes again);
- 404 without Core's ``error`` word (a path Core has no route for: a wrong address) and answers
  that are not JSON -> ``CerebelumRPCError``;
- 2xx, 404, 422 and other answers -> the operation's converter, which knows what they mean for
  it (unknown execution, already running, workflow not found, ...).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from cerebelum_provider import __version__
from cerebelum_provider._arguments import shown
from cerebelum_provider.client import _retry
from cerebelum_provider.client._operations import HttpAnswer, HttpCall, Operation
from cerebelum_provider.client._tls import ssl_context
from cerebelum_provider.client.config import ClientSettings, RetryConfig
from cerebelum_provider.exceptions import (
    CerebelumAuthError,
    CerebelumError,
    CerebelumRPCError,
    CerebelumTLSError,
    CoreInternalError,
    CoreUnavailableError,
)

T = TypeVar("T")

#: Answers worth another attempt: Core (or its gateway) overloaded, restarting or unreachable.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
_AUTH_STATUSES = frozenset({401, 403})

#: Connections kept per client. A triggerer's thousands of waits share one client per Core, so the
#: pool bounds the requests in flight; the rest queue in the pool (its wait counts against the
#: call's deadline, as a gRPC call's queueing does).
POOL_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=30.0)


class _TransientAnswer(Exception):
    """An HTTP answer that another attempt may cure (429, 502, 503, 504)."""

    def __init__(self, answer: HttpAnswer) -> None:
        super().__init__(f"HTTP {answer.status_code}")
        self.answer = answer


def is_tls_failure(error: BaseException) -> bool:
    """True when a connection failed in the TLS handshake (certificate, CA, name), not the network.

    Also true for a TLS alert read after the client's side of the handshake: with TLS 1.3 the
    server checks the client certificate only then, and answers a missing one with an alert.
    """
    if isinstance(error, (httpx.ReadError, httpx.WriteError, ssl.SSLError)):
        return _ssl_alert(error)
    if not isinstance(error, httpx.ConnectError):
        return False
    if _ssl_alert(error, any_ssl_error=True):
        return True
    text = str(error).lower()
    return "certificate_verify_failed" in text or "ssl:" in text or "tlsv1" in text


def _ssl_alert(error: BaseException, *, any_ssl_error: bool = False) -> bool:
    # A connection that merely ended (EOF, close_notify) is the network's failure, worth retrying.
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLError) and (
            any_ssl_error or not isinstance(cause, (ssl.SSLEOFError, ssl.SSLZeroReturnError))
        ):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


# Failures of the connection (a bare ssl.SSLError: see _FAILURES); TLS alerts among them are not retried.
_NETWORK_FAILURES = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, ssl.SSLError)


def is_retryable(error: BaseException) -> bool:
    """True for a failure another attempt may cure: the network, a timeout, or 429/502/503/504."""
    if isinstance(error, _TransientAnswer):
        return True
    if isinstance(error, _NETWORK_FAILURES):
        return not is_tls_failure(error)
    return False


def never_reached_core(error: BaseException) -> bool:
    """True when the request surely never reached Core, so even a call that is not idempotent
    (starting a workflow, approving a step) can be sent again."""
    if isinstance(error, (httpx.ConnectTimeout, httpx.PoolTimeout)):
        return True
    return isinstance(error, httpx.ConnectError) and not is_tls_failure(error)


def _describe(error: BaseException) -> str:
    if isinstance(error, _TransientAnswer):
        return f"HTTP {error.answer.status_code}"
    return f"{type(error).__name__} ({error})" if str(error) else type(error).__name__


def retry_policy(config: RetryConfig, operation: Operation[Any], address: str) -> dict[str, Any]:
    """tenacity's keyword arguments for a REST call."""
    return _retry.retry_policy(
        config,
        operation,
        address,
        is_retryable=is_retryable,
        describe=_describe,
        is_retryable_once_sent=never_reached_core,
    )


def _decode(response: httpx.Response) -> Any:
    if not response.content:
        return {}
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


class _HttpTransportBase:
    """What both REST transports share: settings, TLS context, headers, and the answer mapping."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.address = settings.address.display
        # Read at construction, so a wrong path fails here rather than on the first call.
        self._verify: ssl.SSLContext | bool = ssl_context(settings.tls) if settings.tls is not None else True
        self._extensions: dict[str, Any] = {}
        if settings.tls is not None and settings.tls.server_name_override:
            # Verify Core's certificate against this name instead of the host dialled.
            self._extensions["sni_hostname"] = settings.tls.server_name_override
        self._headers = {
            "accept": "application/json",
            "user-agent": f"cerebelum-provider/{__version__}",
        }
        if settings.token:
            self._headers["authorization"] = f"Bearer {settings.token}"
        self._timeout = httpx.Timeout(settings.timeout)

    def _client_options(self) -> dict[str, Any]:
        return {
            "base_url": self.settings.address.base_url,
            "headers": self._headers,
            "timeout": self._timeout,
            "verify": self._verify,
            "limits": POOL_LIMITS,
            # The environment's proxy settings apply to Core as to any HTTP service.
            "trust_env": True,
        }

    def _request(self, call: HttpCall[Any]) -> dict[str, Any]:
        return {
            "method": call.method,
            "url": call.path,
            "params": call.params,
            "json": call.json,
            "extensions": self._extensions,
        }

    def _answer(self, operation: Operation[T], call: HttpCall[T], response: httpx.Response) -> T:
        """The converted answer, or the mapped failure (``_TransientAnswer`` for the retry loop)."""
        answer = HttpAnswer(response.status_code, _decode(response))
        about = f" about execution {operation.execution_id!r}" if operation.execution_id else ""
        context: dict[str, Any] = {
            "core_address": self.address,
            "execution_id": operation.execution_id,
            "code": response.status_code,
        }
        if response.status_code in _AUTH_STATUSES:
            raise CerebelumAuthError(
                f"Cerebelum Core at {self.address} refused {operation.name}{about}: HTTP "
                f"{response.status_code} {shown(answer.body)}; check the token (Core checks its signature "
                "against its Thalamus keys) and the gateway's access rules",
                **context,
            )
        if response.status_code in TRANSIENT_STATUSES:
            raise _TransientAnswer(answer)
        if response.status_code >= 500:
            raise CoreInternalError(
                f"Cerebelum Core at {self.address} failed internally answering {operation.name}{about}: "
                f"HTTP {response.status_code} {shown(answer.body, 300)}",
                **context,
            )
        if answer.body is None:
            raise CerebelumRPCError(
                f"Cerebelum Core at {self.address} answered {operation.name}{about} with HTTP "
                f"{response.status_code} that is not JSON: {shown(response.text, 200)}; is this Core's "
                "REST API?",
                **context,
            )
        if response.status_code == 404 and not answer.error_word:
            # Core's own 404s name what is missing in "error"; Phoenix's answer for a path it has no
            # route for does not. Then the address is wrong, not the execution or the workflow.
            raise CerebelumRPCError(
                f"Cerebelum Core at {self.address} has no route for {operation.name}{about} "
                f"({call.method} {call.path}): HTTP 404 {shown(answer.body, 200)}; is the path in core_url "
                "right?",
                **context,
            )
        return call.convert(answer, self.address)

    def _policy(self, operation: Operation[Any]) -> Callable[[], dict[str, Any]]:
        return lambda: retry_policy(self.settings.retry, operation, self.address)

    def _error(self, error: BaseException, operation: Operation[Any], attempts: int) -> CerebelumError:
        about = f" about execution {operation.execution_id!r}" if operation.execution_id else ""
        context: dict[str, Any] = {"core_address": self.address, "execution_id": operation.execution_id}
        if is_tls_failure(error):
            return CerebelumTLSError(
                f"TLS handshake with Cerebelum Core at {self.address} failed ({error}); check the CA "
                "bundle, the client certificate and the server name",
                **context,
            )
        if is_retryable(error):
            if isinstance(error, _TransientAnswer):
                context["code"] = error.answer.status_code
            tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
            return CoreUnavailableError(
                f"Cerebelum Core at {self.address} did not answer {operation.name}{about} after {tries}: "
                f"{_describe(error)}",
                **context,
            )
        return CerebelumRPCError(
            f"{operation.name}{about} failed at {self.address}: {_describe(error)}", **context
        )


# httpx's asyncio backend lets an ssl.SSLError read after the handshake (a TLS alert) out unwrapped.
_FAILURES = (httpx.HTTPError, _TransientAnswer, ssl.SSLError)


class AsyncHttpTransport(_HttpTransportBase):
    """Sends operations over one ``httpx.AsyncClient`` (one connection pool), created on first use
    in the running loop."""

    def __init__(self, settings: ClientSettings) -> None:
        super().__init__(settings)
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ensure_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None:
            self._client, self._loop = httpx.AsyncClient(**self._client_options()), loop
        elif loop is not self._loop:
            # Pooled connections belong to the loop that opened them.
            raise RuntimeError(
                "this ExecutionClient was first used in another event loop; create one client per loop"
            )
        return self._client

    async def call(self, operation: Operation[T]) -> T:
        """Send ``operation`` (retrying transient failures) and return its converted answer.

        Raises:
            CerebelumError: the mapped failure, or the converter's error for an answer that means one.
        """
        call = operation.http()
        client = self._ensure_client()
        request = self._request(call)

        async def send() -> T:
            return self._answer(operation, call, await client.request(**request))

        try:
            return await _retry.send_with_retries(send, self._policy(operation), _FAILURES)
        except _retry.RetriesSpent as spent:
            raise self._error(spent.error, operation, spent.attempts) from None

    async def close(self) -> None:
        """Close the pool; the next call opens a new one."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()


class SyncHttpTransport(_HttpTransportBase):
    """Sends operations over one ``httpx.Client`` (one connection pool), created on first use;
    thread-safe."""

    def __init__(self, settings: ClientSettings) -> None:
        super().__init__(settings)
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _ensure_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(**self._client_options())
            return self._client

    def call(self, operation: Operation[T]) -> T:
        """Send ``operation`` (retrying transient failures) and return its converted answer.

        Raises:
            CerebelumError: the mapped failure, or the converter's error for an answer that means one.
        """
        call = operation.http()
        client = self._ensure_client()
        request = self._request(call)

        def send() -> T:
            return self._answer(operation, call, client.request(**request))

        try:
            return _retry.send_with_retries_blocking(send, self._policy(operation), _FAILURES)
        except _retry.RetriesSpent as spent:
            raise self._error(spent.error, operation, spent.attempts) from None

    def close(self) -> None:
        """Close the pool; the next call opens a new one."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
