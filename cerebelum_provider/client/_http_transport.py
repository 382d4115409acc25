"""Core's REST API: one httpx connection pool per client, deadlines, retries and the mapping of
HTTP failures onto the same error hierarchy as gRPC's.

Both transports here take an :class:`~cerebelum_provider.client._operations.Operation`, send its
REST form and return its converted answer. The mapping, the same on both APIs:

- 401 / 403 -> ``CerebelumAuthError`` (never retried);
- refused connections, timeouts, broken connections, 429, 502, 503, 504 -> retried within the
  client's ``RetryConfig``, then ``CoreUnavailableError``;
- a 429 still refused when those retries end -> wait for Core's next rate-limit window and send
  again, at most ``RATE_LIMIT_WINDOWS`` times (Core's limiter refuses a call before handling it, so
  this is safe even for starting a workflow), then ``CoreUnavailableError``; a client with retries
  off (``max_attempts=1``) waits for no window;
- a failed TLS handshake -> ``CerebelumTLSError`` at once;
- 500 with Phoenix's bare ``Internal Server Error`` body to a status read -> retried, then
  ``CoreBusyError`` (an unavailable Core): the released Core answers so while one of its engines
  is busy past 5 s;
- any other 500 -> ``CoreInternalError`` (Core crashed answering; the same call crashes again);
- an empty 404 (what Core's gRPC port answers HTTP/1.1) and an answer that is not HTTP/1.1 at all
  (an HTTP/2-only gRPC server) -> ``CoreAPIMismatchError`` at once, naming the setting to change;
- 404 without Core's ``error`` word (a path Core has no route for: a wrong address) and answers
  that are not JSON -> ``CerebelumRPCError``;
- 2xx, 404, 422 and other answers -> the operation's converter, which knows what they mean for
  it (unknown execution, already running, workflow not found, ...).

The client's ``timeout`` bounds each attempt whole, as a gRPC deadline does, not each read: a body
trickling in ends at it too. The caller's deadline (``_deadline.calls_end_within``) bounds the
retries and the waits for rate-limit windows.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import math
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from cerebelum_provider._arguments import shown
from cerebelum_provider._core import CORE_DEFAULT_HTTP_PORT
from cerebelum_provider._version import __version__
from cerebelum_provider.client import _deadline, _retry
from cerebelum_provider.client._operations import HttpAnswer, HttpCall, Operation
from cerebelum_provider.client._tls import ssl_context
from cerebelum_provider.client.config import ClientSettings, CoreAPI, RetryConfig
from cerebelum_provider.exceptions import (
    CerebelumAuthError,
    CerebelumError,
    CerebelumRPCError,
    CerebelumTLSError,
    CoreAPIMismatchError,
    CoreBusyError,
    CoreInternalError,
    CoreUnavailableError,
    ErrorCode,
)

T = TypeVar("T")

#: Answers worth another attempt: Core (or its gateway) overloaded, restarting or unreachable.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
_AUTH_STATUSES = frozenset({401, 403})
#: Phoenix's body for a request whose handler crashed; to a status read of the released Core, the
#: read timing out on an engine busy past 5 s.
PHOENIX_INTERNAL_ERROR = {"errors": {"detail": "Internal Server Error"}}

#: Connections kept per client. A triggerer's thousands of waits share one client per Core, so the
#: pool bounds the requests in flight; the rest queue for a free connection (the wait counts against
#: the call's deadline, as a gRPC call's queueing does).
POOL_CONNECTIONS = 64
POOL_LIMITS = httpx.Limits(
    max_connections=POOL_CONNECTIONS, max_keepalive_connections=POOL_CONNECTIONS, keepalive_expiry=30.0
)


class _TransientAnswer(Exception):
    """An HTTP answer that another attempt may cure (429, 502, 503, 504, a busy engine's 500), with
    its ``retry-after`` in seconds (None when it gave none)."""

    def __init__(self, answer: HttpAnswer, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {answer.status_code}")
        self.answer = answer
        self.retry_after = retry_after

    @property
    def rate_limited(self) -> bool:
        return self.answer.status_code == 429

    @property
    def engine_busy(self) -> bool:
        return self.answer.status_code == 500


class WholeCallTimeout(httpx.TimeoutException):
    """An attempt got no complete answer within its time (the client's ``timeout``, or less when
    the caller's deadline came first), however quickly each piece of it arrived."""


def retry_after_seconds(value: str | None) -> float | None:
    """A ``retry-after`` header as seconds from now (it is a number of seconds or an HTTP date);
    None when absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


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


def speaks_no_http1(error: BaseException) -> bool:
    """True when the server answered bytes that cannot start an HTTP/1.1 response: an HTTP/2-only
    server such as a gRPC port (its first frame is binary), or a TLS port answering plaintext."""
    return isinstance(error, httpx.RemoteProtocolError) and str(error).startswith(
        ("illegal request line", "illegal status line")
    )


# Failures of the connection (a bare ssl.SSLError: see _FAILURES); TLS alerts among them are not retried.
_NETWORK_FAILURES = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, ssl.SSLError)


def is_retryable(error: BaseException) -> bool:
    """True for a failure another attempt may cure: the network, a timeout, or 429/502/503/504."""
    if isinstance(error, _TransientAnswer):
        return True
    if isinstance(error, _NETWORK_FAILURES):
        return not is_tls_failure(error) and not speaks_no_http1(error)
    return False


def network_error_code(error: BaseException) -> ErrorCode | None:
    """The code gRPC gives a failure that got no HTTP status: DEADLINE_EXCEEDED for a timeout,
    UNAVAILABLE for a connection that failed, broke or spoke no HTTP/1.1; None for anything else."""
    if isinstance(error, httpx.TimeoutException):
        return ErrorCode.DEADLINE_EXCEEDED
    return ErrorCode.UNAVAILABLE if isinstance(error, _NETWORK_FAILURES) else None


def never_reached_core(error: BaseException) -> bool:
    """True when the request surely never reached Core, so even a call that is not idempotent
    (starting a workflow, approving a step) can be sent again."""
    if isinstance(error, (httpx.ConnectTimeout, httpx.PoolTimeout)):
        return True
    return isinstance(error, httpx.ConnectError) and not is_tls_failure(error)


def _describe(error: BaseException) -> str:
    if isinstance(error, _TransientAnswer):
        answer = error.answer
        if error.engine_busy:
            return (
                f"HTTP 500 {shown(answer.body, 200)}, as the released Core answers a status read while "
                "one of its engines is busy past 5 s"
            )
        word = f" {answer.error_word}" if answer.error_word else ""
        limit = answer.body.get("limit") if isinstance(answer.body, dict) else None
        return f"HTTP {answer.status_code}{word}" + (f" (limit {limit})" if limit is not None else "")
    return f"{type(error).__name__} ({error})" if str(error) else type(error).__name__


def retry_policy(
    config: RetryConfig,
    operation: Operation[Any],
    address: str,
    lines: _retry.FailureLines | None = None,
) -> dict[str, Any]:
    """tenacity's keyword arguments for a REST call."""
    return _retry.retry_policy(
        config,
        operation,
        address,
        is_retryable=is_retryable,
        describe=_describe,
        is_retryable_once_sent=never_reached_core,
        lines=lines,
    )


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """httpx's default context (certifi, or SSL_CERT_FILE/SSL_CERT_DIR as set when the first
    client is made), shared: loading the roots was most of what making a client cost
    (bench/RESULTS.md, "Client tests per transport")."""
    return httpx.create_ssl_context()


def _decode(content: bytes) -> Any:
    if not content:
        return {}
    try:
        return json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


class _HttpTransportBase:
    """What both REST transports share: settings, TLS context, headers, and the answer mapping."""

    api: CoreAPI = CoreAPI.HTTP

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.address = settings.address.display
        self._failure_lines = _retry.FailureLines()
        # Read at construction, so a wrong path fails here rather than on the first call.
        self._verify = ssl_context(settings.tls) if settings.tls is not None else _default_ssl_context()
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

    def _answer(
        self,
        operation: Operation[T],
        call: HttpCall[T],
        status_code: int,
        headers: httpx.Headers,
        content: bytes,
    ) -> T:
        """The converted answer, or the mapped failure (``_TransientAnswer`` for the retry loop)."""
        answer = HttpAnswer(status_code, _decode(content))
        about = f" about execution {operation.execution_id!r}" if operation.execution_id else ""
        context: dict[str, Any] = {
            "core_address": self.address,
            "execution_id": operation.execution_id,
            "transport_code": status_code,
        }
        if status_code in _AUTH_STATUSES:
            raise CerebelumAuthError(
                f"Cerebelum Core at {self.address} refused {operation.name}{about}: HTTP "
                f"{status_code} {shown(answer.body)}; check the token (Core checks its signature "
                "against its Thalamus keys) and the gateway's access rules",
                **context,
            )
        if status_code in TRANSIENT_STATUSES:
            raise _TransientAnswer(answer, retry_after_seconds(headers.get("retry-after")))
        if status_code == 500 and operation.status_read and answer.body == PHOENIX_INTERNAL_ERROR:
            raise _TransientAnswer(answer)
        if status_code >= 500:
            raise CoreInternalError(
                f"Cerebelum Core at {self.address} failed internally answering {operation.name}{about}: "
                f"HTTP {status_code} {shown(answer.body, 300)}",
                **context,
            )
        if status_code == 404 and not content:
            # Core's REST API names what it did not find; its gRPC port answers HTTP/1.1 an empty 404.
            raise CoreAPIMismatchError(
                f"Cerebelum Core at {self.address} answered {operation.name}{about} ({call.method} "
                f"{call.path}) with an empty HTTP 404, as Core's gRPC port does, not its REST API: use "
                f"Core's HTTP port ({CORE_DEFAULT_HTTP_PORT} by default), or connect with host:port "
                "(api=grpc in the Airflow connection); behind a gateway, check the path in core_url",
                **context,
            )
        if answer.body is None:
            raise CerebelumRPCError(
                f"Cerebelum Core at {self.address} answered {operation.name}{about} with HTTP "
                f"{status_code} that is not JSON: {shown(content.decode('utf-8', 'replace'), 200)}; is this "
                "Core's "
                "REST API?",
                **context,
            )
        if status_code == 404 and not answer.error_word:
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
        return lambda: retry_policy(self.settings.retry, operation, self.address, self._failure_lines)

    def _rate_limit_wait(
        self, error: BaseException, operation: Operation[Any], windows_waited: int
    ) -> float | None:
        """Seconds to wait for Core's next rate-limit window before sending again (logged), or None
        when ``error`` is no 429, the call already waited ``RATE_LIMIT_WINDOWS`` windows, or the
        client's retries are off (one attempt: a caller that wants a quick answer, as a connection test)."""
        if not isinstance(error, _TransientAnswer) or not error.rate_limited:
            return None
        if windows_waited >= _retry.RATE_LIMIT_WINDOWS or self.settings.retry.max_attempts == 1:
            return None
        now = time.time()
        wait = _retry.until_next_rate_limit_window(now, error.retry_after)
        if not _retry.rate_limit_wait_fits(wait):
            return None
        about = f" about execution {operation.execution_id!r}" if operation.execution_id else ""
        self._failure_lines.warn(
            "Cerebelum Core at %s is rate-limiting this client (%s): %s%s waits %.1f s for the next "
            "rate-limit window and tries again at %s UTC (wait %d of %d)",
            self.address,
            _describe(error),
            operation.name,
            about,
            wait,
            time.strftime("%H:%M:%S", time.gmtime(now + wait)),
            windows_waited + 1,
            _retry.RATE_LIMIT_WINDOWS,
        )
        return wait

    def _deadline_note(self, error: BaseException, windows_waited: int) -> str:
        """Why the caller's deadline, when it did, ended the call before its retries or windows."""
        left = _deadline.remaining()
        if left is None:
            return ""
        if left <= 0:
            return _deadline.ended_note()
        rate_limited = isinstance(error, _TransientAnswer) and error.rate_limited
        if (
            rate_limited
            and windows_waited < _retry.RATE_LIMIT_WINDOWS
            and self.settings.retry.max_attempts > 1
        ):
            return "; Core's next rate-limit window opens after the caller's deadline"
        return ""

    def _error(
        self, error: BaseException, operation: Operation[Any], attempts: int, windows_waited: int = 0
    ) -> CerebelumError:
        about = f" about execution {operation.execution_id!r}" if operation.execution_id else ""
        context: dict[str, Any] = {
            "core_address": self.address,
            "execution_id": operation.execution_id,
            "code": network_error_code(error),
        }
        by_deadline = self._deadline_note(error, windows_waited)
        if is_tls_failure(error):
            return CerebelumTLSError(
                f"TLS handshake with Cerebelum Core at {self.address} failed ({error}); check the CA "
                "bundle, the client certificate and the server name",
                **context,
            )
        if speaks_no_http1(error):
            return CoreAPIMismatchError(
                f"Cerebelum Core at {self.address} answered {operation.name}{about} with bytes that are "
                f"not HTTP/1.1 ({error}): this is Core's gRPC port, or a port that wants TLS. Use Core's "
                f"HTTP port ({CORE_DEFAULT_HTTP_PORT} by default) or connect with host:port "
                "(api=grpc in the Airflow connection); for a TLS port use https:// (tls=true)",
                **context,
            )
        if is_retryable(error):
            if isinstance(error, _TransientAnswer):
                context["transport_code"] = error.answer.status_code
                if error.engine_busy:
                    context["code"] = CoreBusyError.default_code
            tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
            waited = (
                f"; still rate-limited after waiting for {windows_waited} new rate-limit windows"
                if windows_waited
                else ""
            )
            unavailable = (
                CoreBusyError
                if isinstance(error, _TransientAnswer) and error.engine_busy
                else CoreUnavailableError
            )
            return unavailable(
                f"Cerebelum Core at {self.address} did not answer {operation.name}{about} after {tries}: "
                f"{_describe(error)}{waited}{by_deadline}",
                **context,
            )
        return CerebelumRPCError(
            f"{operation.name}{about} failed at {self.address}: {_describe(error)}", **context
        )


# httpx's asyncio backend lets an ssl.SSLError read after the handshake (a TLS alert) out unwrapped.
_FAILURES = (httpx.HTTPError, _TransientAnswer, ssl.SSLError)


async def _within(seconds: float, request: Awaitable[T]) -> T:
    """``await request``, cancelled after ``seconds`` (raises ``asyncio.TimeoutError`` then)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await request
    return await asyncio.wait_for(request, seconds)


class AsyncHttpTransport(_HttpTransportBase):
    """Sends operations over one ``httpx.AsyncClient`` (one connection pool), created on first use
    in the running loop; ``httpx_transport`` replaces httpx's network transport beneath it."""

    def __init__(
        self, settings: ClientSettings, *, httpx_transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        super().__init__(settings)
        self._httpx_transport = httpx_transport
        self._client: httpx.AsyncClient | None = None
        # Requests past the pool's connections wait here, in FIFO order, not in httpx's pool, which
        # scans its whole queue on every request it starts or ends: thousands of waits asking at once
        # (a triggerer starting) cost it quadratic time and ran their calls into timeouts.
        self._free_connections: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ensure_client(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        client, free_connections = self._client, self._free_connections
        if client is None or free_connections is None:
            client = httpx.AsyncClient(**self._client_options(), transport=self._httpx_transport)
            free_connections = asyncio.Semaphore(POOL_CONNECTIONS)
            self._client, self._free_connections, self._loop = client, free_connections, loop
        elif loop is not self._loop:
            # Pooled connections belong to the loop that opened them.
            raise RuntimeError(
                "this ExecutionClient was first used in another event loop; create one client per loop"
            )
        return client, free_connections

    async def call(self, operation: Operation[T]) -> T:
        """Send ``operation`` (retrying transient failures) and return its converted answer.

        Raises:
            CerebelumError: the mapped failure, or the converter's error for an answer that means one.
        """
        call = operation.http()
        client, free_connections = self._ensure_client()
        request = self._request(call)

        async def request_on_free_connection(seconds: float) -> httpx.Response:
            async with free_connections:
                return await client.request(**request, timeout=seconds)

        attempts_sent = 0

        async def send() -> T:
            nonlocal attempts_sent
            seconds = _deadline.attempt_timeout(self.settings.timeout, attempts_sent)
            attempts_sent += 1
            try:
                response = await _within(seconds, request_on_free_connection(seconds))
            except asyncio.TimeoutError:
                raise WholeCallTimeout(f"no complete answer within {seconds:.3g} s") from None
            return self._answer(operation, call, response.status_code, response.headers, response.content)

        policy = self._policy(operation)
        attempts = windows_waited = 0
        while True:
            try:
                return await _retry.send_with_retries(send, policy, _FAILURES)
            except _retry.RetriesSpent as spent:
                attempts += spent.attempts
                wait = self._rate_limit_wait(spent.error, operation, windows_waited)
                if wait is None:
                    raise self._error(spent.error, operation, attempts, windows_waited) from None
            except _deadline.DeadlinePassed:
                raise _deadline.not_sent(operation, self.address) from None
            await asyncio.sleep(wait)
            windows_waited += 1

    async def close(self) -> None:
        """Close the pool; the next call opens a new one."""
        client, self._client, self._free_connections, self._loop = self._client, None, None, None
        if client is not None:
            await client.aclose()


class SyncHttpTransport(_HttpTransportBase):
    """Sends operations over one ``httpx.Client`` (one connection pool), created on first use;
    thread-safe; ``httpx_transport`` replaces httpx's network transport beneath it."""

    def __init__(
        self, settings: ClientSettings, *, httpx_transport: httpx.BaseTransport | None = None
    ) -> None:
        super().__init__(settings)
        self._httpx_transport = httpx_transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _ensure_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(**self._client_options(), transport=self._httpx_transport)
            return self._client

    def call(self, operation: Operation[T]) -> T:
        """Send ``operation`` (retrying transient failures) and return its converted answer.

        Raises:
            CerebelumError: the mapped failure, or the converter's error for an answer that means one.
        """
        call = operation.http()
        client = self._ensure_client()
        request = self._request(call)

        attempts_sent = 0

        def send() -> T:
            nonlocal attempts_sent
            seconds = _deadline.attempt_timeout(self.settings.timeout, attempts_sent)
            attempts_sent += 1
            ends = time.monotonic() + seconds
            # httpx's blocking client bounds each read only: the body is read piece by piece and
            # the attempt's end checked after each, so a body trickling in ends there too.
            with client.stream(**request, timeout=seconds) as response:
                content = bytearray()
                for piece in response.iter_bytes():
                    if time.monotonic() > ends:
                        raise WholeCallTimeout(f"no complete answer within {seconds:.3g} s")
                    content += piece
            return self._answer(operation, call, response.status_code, response.headers, bytes(content))

        policy = self._policy(operation)
        attempts = windows_waited = 0
        while True:
            try:
                return _retry.send_with_retries_blocking(send, policy, _FAILURES)
            except _retry.RetriesSpent as spent:
                attempts += spent.attempts
                wait = self._rate_limit_wait(spent.error, operation, windows_waited)
                if wait is None:
                    raise self._error(spent.error, operation, attempts, windows_waited) from None
            except _deadline.DeadlinePassed:
                raise _deadline.not_sent(operation, self.address) from None
            time.sleep(wait)
            windows_waited += 1

    def close(self) -> None:
        """Close the pool; the next call opens a new one."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
