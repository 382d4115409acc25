"""``CerebelumHook``: the one place that knows how a Cerebelum connection becomes a client.

Operators, sensors and triggers hold a connection id and ask this hook for a client. Importing
this module imports no grpc, protobuf or tenacity: the client is imported inside the methods
that build one, so DAG files pay nothing for it at parse time.

In an event loop (the triggerer's), a connection is looked up once per connection id and
``CONNECTION_CACHE_SECONDS`` and shared by every hook of that loop: Airflow's lookup costs about a
millisecond of CPU (its secrets backends are set up again on every call), which a thousand triggers
starting together would otherwise spend on the loop all at once.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from cerebelum_provider._arguments import DEFAULT_CONN_ID, check_conn_id
from cerebelum_provider._core import CORE_DEFAULT_HTTP_PORT
from cerebelum_provider.exceptions import (
    CerebelumAuthError,
    CerebelumTLSError,
    CoreAPIMismatchError,
    CoreInternalError,
    CoreUnavailableError,
)
from cerebelum_provider.hooks._connection import CerebelumConnectionSettings, parse_connection
from cerebelum_provider.hooks._shared_clients import shared_client, token_fingerprint

if TYPE_CHECKING:
    from cerebelum_provider.client import ExecutionClient, RetryConfig, SyncExecutionClient
    from cerebelum_provider.operators._common import Logger

_API_NAMES = {"http": "HTTP", "grpc": "gRPC"}

#: Seconds the hooks of one event loop reuse a connection's looked-up settings: an edited connection
#: reaches the triggers that start after it within this time.
CONNECTION_CACHE_SECONDS = 60.0


class _SharedLookup:
    """One connection lookup shared by the hooks of one event loop until ``expires_at`` (monotonic)."""

    __slots__ = ("expires_at", "outcome")

    def __init__(self, expires_at: float, lookup: asyncio.Task[CerebelumConnectionSettings]) -> None:
        self.expires_at = expires_at
        # The task while it runs, then its result: a finished task would keep its loop, which keys
        # this entry in a weak dictionary, alive.
        self.outcome: asyncio.Task[CerebelumConnectionSettings] | CerebelumConnectionSettings = lookup


_lookups_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _SharedLookup]] = (
    weakref.WeakKeyDictionary()
)


async def _shared_settings(
    conn_id: str, look_up: Callable[[], Coroutine[Any, Any, CerebelumConnectionSettings]]
) -> CerebelumConnectionSettings:
    """This loop's settings for ``conn_id``: reused while fresh, else looked up once for every caller.

    Concurrent callers await the same lookup; a failed one is forgotten, so the next caller tries
    again (and every caller waiting on it gets its error).
    """
    loop = asyncio.get_running_loop()
    lookups = _lookups_by_loop.setdefault(loop, {})
    now = time.monotonic()
    entry = lookups.get(conn_id)
    if entry is None or entry.expires_at <= now:
        task = loop.create_task(look_up(), name=f"cerebelum-connection-lookup {conn_id}")
        entry = lookups[conn_id] = _SharedLookup(now + CONNECTION_CACHE_SECONDS, task)
        task.add_done_callback(functools.partial(_settle_lookup, lookups, conn_id, entry))
    if isinstance(entry.outcome, asyncio.Task):
        # Shielded: a caller cancelled (its trigger was) must not cancel the lookup others await.
        return await asyncio.shield(entry.outcome)
    return entry.outcome


def _settle_lookup(
    lookups: dict[str, _SharedLookup],
    conn_id: str,
    entry: _SharedLookup,
    task: asyncio.Task[CerebelumConnectionSettings],
) -> None:
    if task.cancelled() or task.exception() is not None:
        if lookups.get(conn_id) is entry:
            del lookups[conn_id]
        return
    entry.outcome = task.result()


async def _adecode_extra(connection: Any) -> dict[str, Any]:
    """The connection's extras, decoded without a blocking call on the event loop."""
    if not connection.extra:
        return {}
    aextra_dejson = getattr(connection, "aextra_dejson", None)
    if aextra_dejson is not None:
        return await aextra_dejson()
    # Airflow 3.2 has no async decoder, and its extra_dejson masks values through a blocking
    # call to the supervisor. Plain JSON is enough: the only secret an extra may hold, a pasted
    # client key, is under a name Airflow masks wherever it shows extras, and is never logged here.
    try:
        extra = json.loads(connection.extra)
    except ValueError as error:
        raise ValueError(f"connection {connection.conn_id!r}: extra is not valid JSON ({error})") from None
    if not isinstance(extra, dict):
        raise ValueError(  # noqa: TRY004 (a bad connection is a ValueError, whatever is wrong with it)
            f"connection {connection.conn_id!r}: extra must be a JSON object, got {extra!r}"
        )
    return extra


class CerebelumHook(BaseHook):
    """Build clients for Cerebelum Core from an Airflow connection of type ``cerebelum``.

    The connection holds the host, the port, the bearer token in the password field and, in
    ``extra``, ``api`` (``http``, Core's REST API, the default, port 4001; or ``grpc``, port 9090),
    ``tls``, ``ca_cert``, ``client_cert``, ``client_key`` (paths) or ``ca_cert_pem``,
    ``client_cert_pem``, ``client_private_key_pem`` (pasted PEM), ``server_name``, ``timeout``
    (seconds), ``max_attempts`` and ``ui_url``. URI forms::

        cerebelum://:TOKEN@core.example.com                     (REST on 4001; tls=true means https)
        cerebelum://:TOKEN@core.example.com:9443?api=grpc&tls=true&ca_cert=/etc/ssl/core-ca.pem

    Every call a hook's client makes has one retry budget: the connection's ``max_attempts``
    (5 by default) with a backoff of 0.5, 1, 2, 4... seconds (at most 10); nothing above the
    client retries again. One call's worst case is ``max_attempts`` deadlines plus the waits:
    5 x 10 s + 7.5 s (and up to 2 s of jitter), about a minute. Over REST, a call still refused by
    Core's rate limiter (HTTP 429) then waits for up to three of its one-minute windows, a budget each.

    Args:
        cerebelum_conn_id: the Airflow connection id.
        retry: a retry budget overriding the connection's; None uses the connection's.
    """

    conn_name_attr = "cerebelum_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "cerebelum"
    hook_name = "Cerebelum Core"

    def __init__(
        self,
        cerebelum_conn_id: str = default_conn_name,
        *,
        retry: RetryConfig | None = None,
        logger_name: str | None = None,
    ) -> None:
        super().__init__(logger_name=logger_name)
        self.cerebelum_conn_id = check_conn_id(cerebelum_conn_id)
        self.retry = retry
        self._settings: CerebelumConnectionSettings | None = None

    def __repr__(self) -> str:
        return f"CerebelumHook(cerebelum_conn_id={self.cerebelum_conn_id!r})"

    # Connection -----------------------------------------------------------------------------

    def get_settings(self) -> CerebelumConnectionSettings:
        """The connection's validated settings (looked up once per hook, blocking).

        Raises:
            airflow.sdk.exceptions.AirflowNotFoundException (via Airflow): no such connection.
            ValueError: the connection is invalid; the message names the field.
        """
        if self._settings is None:
            self._settings = parse_connection(self.get_connection(self.cerebelum_conn_id))
            self._log_defaulted_api(self._settings)
        return self._settings

    async def aget_settings(self) -> CerebelumConnectionSettings:
        """Like :meth:`get_settings`, with Airflow's async connection lookup (for triggers).

        Never blocks the event loop: the connection and its extras are read with Airflow's async
        calls (the sync ``extra_dejson`` talks to the supervisor and must not run on the loop).

        Every hook in the running event loop shares one lookup per connection id for
        ``CONNECTION_CACHE_SECONDS`` (60 s); concurrent callers await the same lookup, and a failed
        lookup is not kept. So an edited connection reaches the triggers that start in a running
        triggerer within 60 s; a trigger already polling keeps the client it started with.

        Raises:
            airflow.sdk.exceptions.AirflowNotFoundException (via Airflow): no such connection.
            ValueError: the connection is invalid; the message names the field.
        """
        if self._settings is None:
            self._settings = await _shared_settings(self.cerebelum_conn_id, self._look_up_settings)
        return self._settings

    async def _look_up_settings(self) -> CerebelumConnectionSettings:
        connection = await self.aget_connection(self.cerebelum_conn_id)
        settings = parse_connection(connection, await _adecode_extra(connection))
        self._log_defaulted_api(settings)
        return settings

    def _log_defaulted_api(self, settings: CerebelumConnectionSettings) -> None:
        # A connection without "api" used to speak gRPC: say which API it speaks now.
        if settings.api_defaulted:
            self.log.info(
                "Connection %r names no Core API: it speaks %s at %s, the default (set api=grpc for gRPC)",
                self.cerebelum_conn_id,
                _API_NAMES[settings.api],
                settings.address,
            )

    def get_conn(self) -> SyncExecutionClient:
        """Same as :meth:`get_client` (Airflow's generic hook entry point)."""
        return self.get_client()

    # Clients --------------------------------------------------------------------------------

    def get_client(self) -> SyncExecutionClient:
        """A new blocking client for this connection; the caller closes it (``with`` works).

        Raises:
            ValueError: the connection is invalid (see :meth:`get_settings`).
        """
        from cerebelum_provider.client import SyncExecutionClient

        settings = self.get_settings()
        return SyncExecutionClient(**settings.client_kwargs(), retry=self.retry or settings.retry_config())

    async def get_async_client(self) -> ExecutionClient:
        """The asyncio client shared by every caller in this event loop with the same settings.

        One channel (one HTTP/2 connection) per event loop, Core address, TLS settings, token,
        timeout and retry budget, however many triggers ask. The caller must NOT close it; it is
        closed when the event loop shuts down.

        Raises:
            ValueError: the connection is invalid (see :meth:`get_settings`).
        """
        return self.shared_async_client(await self.aget_settings())

    def shared_async_client(self, settings: CerebelumConnectionSettings) -> ExecutionClient:
        """:meth:`get_async_client` for settings already looked up (:meth:`aget_settings`), for a
        caller that needs both; call it in the event loop the client is for."""
        key = (
            settings.address,
            settings.tls_key(),
            token_fingerprint(settings.token),
            settings.timeout,
            self.retry or settings.retry_config(),
        )
        return shared_client(key, lambda: self._build_async_client(settings))

    def _build_async_client(self, settings: CerebelumConnectionSettings) -> ExecutionClient:
        from cerebelum_provider.client import ExecutionClient

        return ExecutionClient(**settings.client_kwargs(), retry=self.retry or settings.retry_config())

    async def astop_own_execution(self, execution_id: str, log: Logger) -> None:
        """Stop an execution a task started, as the task is killed (or its wait timed out), with
        this loop's shared client; over gRPC, which has no stop call, warn that it runs on.

        Never raises: a kill must not fail because Core could not be told.
        """
        from cerebelum_provider.client import CoreAPI

        try:
            client = await self.get_async_client()
            if client.api is not CoreAPI.HTTP:
                log.warning(
                    "Cerebelum execution %s is left running: stopping an execution needs Core's HTTP API "
                    "(api=http on connection %r)",
                    execution_id,
                    self.cerebelum_conn_id,
                )
                return
            await client.stop_execution(execution_id)
        except Exception as error:  # noqa: BLE001 (a kill must go through whatever the lookup or Core answers)
            log.warning("Could not stop Cerebelum execution %s: %s", execution_id, error)
            return
        log.info("Stopped Cerebelum execution %s, which this task started", execution_id)

    # UI helpers -----------------------------------------------------------------------------

    def execution_url(self, execution_id: str) -> str | None:
        """The connection's ``ui_url`` template filled with ``execution_id``; None when unset.

        Raises:
            ValueError: the template has placeholders other than ``{execution_id}``.
        """
        template = self.get_settings().ui_url
        if not template:
            return None
        try:
            return template.format(execution_id=execution_id)
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"connection {self.cerebelum_conn_id!r}: extra field 'ui_url' may only use the "
                f"placeholder {{execution_id}}, got {template!r} ({error!r})"
            ) from None

    def test_connection(self) -> tuple[bool, str]:
        """Prove that Core answers what the sensors and operators will ask: list one execution and,
        when there is one, read its status. ``(True, "Connected to ...")`` or ``(False, reason)``.

        Never raises. The reason is one line that says what to change (the token, the port, the
        TLS setting or the API) and never contains the token.
        """
        from cerebelum_provider.client import RetryConfig, SyncExecutionClient

        # The UI's Test button shows a reason for whatever went wrong; it must never raise.
        try:
            settings = self.get_settings()
        except Exception as error:  # noqa: BLE001
            return False, _one_line(f"Invalid Cerebelum connection: {error}")
        connected = f"Connected to Cerebelum Core at {settings.address} over {_API_NAMES[settings.api]}"
        step = "listing executions"
        try:
            # One attempt: the UI's "Test" button should answer quickly, not wait out a retry budget.
            with SyncExecutionClient(**settings.client_kwargs(), retry=RetryConfig(max_attempts=1)) as client:
                executions, total_count, _ = client.list_executions(limit=1)
                if not executions:
                    # Over gRPC the released Cores list an empty Core fine and crash on everything else.
                    warning = (
                        " (over gRPC the released Cores fail every status read of an existing execution: "
                        "api=http is what they need)"
                        if settings.api == "grpc"
                        else ""
                    )
                    return True, f"{connected}: no executions yet, so no status read was tried{warning}"
                execution_id = executions[0].execution_id
                step = f"reading the status of execution {execution_id!r}"
                state = client.get_execution_status(execution_id).status.name
        except Exception as error:  # noqa: BLE001
            return False, _one_line(describe_core_failure(settings, step, error))
        return True, f"{connected}: {total_count} executions, the status of {execution_id!r} read ({state})"

    @classmethod
    def describe_settings(cls, settings: CerebelumConnectionSettings) -> dict[str, Any]:
        """The settings as a dict safe to log: the token is replaced by whether one is set."""
        return {
            "address": settings.address,
            "api": settings.api,
            "tls": settings.tls,
            "ca_cert": settings.ca_cert,
            "client_cert": settings.client_cert,
            "ca_cert_pem": "pasted" if settings.ca_cert_pem else None,
            "client_cert_pem": "pasted" if settings.client_cert_pem else None,
            "client_private_key_pem": "***" if settings.client_key_pem else None,
            "server_name": settings.server_name,
            "timeout": settings.timeout,
            "max_attempts": settings.max_attempts,
            "token": "***" if settings.token else None,
        }


def describe_core_failure(settings: CerebelumConnectionSettings, step: str, error: Exception) -> str:
    """What failed while ``step`` (e.g. "listing executions"), what to change, then the error itself: the
    Test button's reason and the Cerebelum pages' error text."""
    where = f"Cerebelum Core at {settings.address}"
    if isinstance(error, CerebelumAuthError):
        advice = "refused the token: put a token Core accepts in the Bearer token field"
    elif isinstance(error, CoreAPIMismatchError):
        other = "grpc" if settings.api == "http" else "http"
        advice = (
            f"answers the other API at port {settings.port}: set Core API to {other} (api={other}), "
            f"or give the port of Core's {settings.api.upper()} API"
        )
    elif isinstance(error, CerebelumTLSError) and "wrong_version_number" in str(error).lower():
        advice = "answered the TLS handshake in plaintext: turn Use TLS off, or give Core's TLS port"
    elif isinstance(error, CerebelumTLSError):
        advice = (
            "failed the TLS handshake: check Use TLS, the CA bundle, the client certificate and key, and "
            "the server name"
        )
    elif isinstance(error, CoreInternalError) and settings.api == "grpc":
        advice = (
            f"failed {step} over gRPC, as the released Cores do for every existing execution: set Core "
            f"API to http (api=http) and the port to Core's HTTP port ({CORE_DEFAULT_HTTP_PORT} by default)"
        )
    elif isinstance(error, CoreUnavailableError):
        advice = (
            f"did not answer {step}: check the host, the port, Use TLS (on for a TLS port, off for a "
            "plaintext one) and that Core is up"
        )
    else:
        advice = f"failed {step}"
    return f"{where} {advice}. ({type(error).__name__}: {error})"


def _one_line(text: str) -> str:
    return " ".join(text.split())
