"""``CoreEmulator``: a local Cerebelum Core for tests and DAG development.

The gRPC server (grpc.aio) and the REST server (``rest``) run on one event loop in a background
thread, so the emulator works the same from synchronous tests, from asyncio tests running another
loop, and from the command line. Everything else (seeding, the clock, faults, the real Core's
bugs, assertions) is a plain method call that is safe from any thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import ssl
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import grpc

from cerebelum_provider import models
from cerebelum_provider.client._http_transport import AsyncHttpTransport, SyncHttpTransport
from cerebelum_provider.client.config import ClientSettings, RetryConfig, http_url
from cerebelum_provider.emulator import render, scenario
from cerebelum_provider.emulator.bugs import RealCoreBugs
from cerebelum_provider.emulator.engine import Engine
from cerebelum_provider.emulator.events import Phase
from cerebelum_provider.emulator.faults import Faults
from cerebelum_provider.emulator.in_process import IN_PROCESS_URL, InProcessHttpxTransport
from cerebelum_provider.emulator.rest import CoreRestApp, RestServer
from cerebelum_provider.emulator.servicer import CoreServicer
from cerebelum_provider.emulator.store import EventStore
from cerebelum_provider.exceptions import ExecutionNotFoundError
from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_START_TIMEOUT = 30.0
# How often the real-time clock looks for sleeps that are over (and steps that are due).
_TICK_SECONDS = 0.1


def _pem(value: bytes | str | None, name: str) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    raise TypeError(f"{name} must be PEM bytes or str, got {type(value).__name__}")


@dataclass(frozen=True)
class EmulatorTLS:
    """Server TLS from PEM data; with ``client_ca_pem`` the server requires client certs (mTLS)."""

    cert_chain_pem: bytes
    private_key_pem: bytes
    client_ca_pem: bytes | None = None

    def __repr__(self) -> str:
        # The private key never appears in logs.
        return f"EmulatorTLS(mtls={self.client_ca_pem is not None})"

    def credentials(self) -> grpc.ServerCredentials:
        """The grpc server credentials these PEMs make."""
        client_ca = _pem(self.client_ca_pem, "client_ca_pem")
        return grpc.ssl_server_credentials(
            [(_pem(self.private_key_pem, "private_key_pem"), _pem(self.cert_chain_pem, "cert_chain_pem"))],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The same material as a server ``ssl.SSLContext`` (for the REST server)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_alpn_protocols(["http/1.1"])
        # The ssl module loads a certificate chain from files only: a private directory, removed at once.
        directory = tempfile.mkdtemp(prefix="cerebelum-emulator-tls-")
        try:
            chain = os.path.join(directory, "server.pem")
            with open(os.open(chain, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as file:
                file.write(_pem(self.private_key_pem, "private_key_pem") or b"")
                file.write(b"\n")
                file.write(_pem(self.cert_chain_pem, "cert_chain_pem") or b"")
            context.load_cert_chain(chain)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        client_ca = _pem(self.client_ca_pem, "client_ca_pem")
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=client_ca.decode())
        return context


class CoreEmulator:
    """gRPC and REST servers that answer like Cerebelum Core, with live executions and faults on demand.

    Use it as a context manager (``with CoreEmulator() as core:``) or call :meth:`start` and
    :meth:`stop`. Steps move only on :meth:`advance` unless ``step_seconds`` is given, in which
    case each running execution moves one step every ``step_seconds`` of real time and sleeps
    end on real time. See ../shared/core-contract.md for what the RPCs answer. ``http_port`` is the
    REST server's port (0: a free one; None: no REST server); ``real_core_bugs`` switches on the
    real release's bugs (a :class:`RealCoreBugs`, or True for all as measured); ``rate_limit``
    switches on Core's per-organisation limit on REST calls a minute (Core's is 1,000; see
    :meth:`set_rate_limit`).
    """

    def __init__(
        self,
        port: int = 0,
        db_path: str | os.PathLike[str] | None = None,
        step_seconds: float | None = None,
        latency: float = 0.0,
        token: str | None = None,
        tls: EmulatorTLS | None = None,
        accept_any_workflow: bool = True,
        demo: bool = False,
        *,
        host: str = "127.0.0.1",
        scenario_data: dict[str, Any] | None = None,
        http_port: int | None = 0,
        real_core_bugs: RealCoreBugs | bool | None = None,
        rate_limit: int | None = None,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int between 0 and 65535, got {port!r}")
        if http_port is not None and (
            isinstance(http_port, bool) or not isinstance(http_port, int) or not 0 <= http_port <= 65535
        ):
            raise ValueError(f"http_port must be an int between 0 and 65535 or None, got {http_port!r}")
        if step_seconds is not None and (
            isinstance(step_seconds, bool) or not isinstance(step_seconds, (int, float)) or step_seconds <= 0
        ):
            raise ValueError(
                f"step_seconds must be a positive number of seconds or None, got {step_seconds!r}"
            )
        if token is not None and (not isinstance(token, str) or not token):
            raise ValueError("token must be a non-empty string or None")
        if tls is not None and not isinstance(tls, EmulatorTLS):
            raise TypeError(f"tls must be an EmulatorTLS or None, got {type(tls).__name__}")
        self._host = host
        self._port = port
        if db_path is not None and not isinstance(db_path, (str, os.PathLike)):
            raise TypeError(f"db_path must be a file path or None, got {type(db_path).__name__} {db_path!r}")
        self._db_path = os.fspath(db_path) if db_path is not None else None
        self._step_seconds = float(step_seconds) if step_seconds is not None else None
        self._tls = tls
        self._accept_any_workflow = accept_any_workflow
        self._demo = demo
        self._scenario = scenario_data
        self._faults = Faults(latency=latency, token=token)
        self._bugs = RealCoreBugs.coerce(real_core_bugs)
        self._faults.set_rate_limit(rate_limit)
        self._http_port = http_port
        # Built even without a REST server: in-process clients reach it without one.
        self._rest_app = CoreRestApp(lambda: self.engine, self._faults, lambda: self._bugs).app
        self._rest: RestServer | None = None
        self._list_broken = False
        self._engine: Engine | None = None
        #: Held by start() and stop() (stop() while it waits for the loop to shut down).
        self._lock = threading.RLock()
        #: Held only to open the engine; what the loop's handlers may wait for.
        self._engine_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: grpc.aio.Server | None = None
        self._ticker: asyncio.Task | None = None

    def __repr__(self) -> str:
        state = "running" if self._thread else "stopped"
        rest = f", http_url={self.http_url!r}" if self._http_port is not None else ""
        return f"CoreEmulator(address={self.address!r}{rest}, db={self._db_path or ':memory:'}, {state})"

    # Lifecycle -------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` the server listens on (the real port once started with port 0)."""
        return f"{self._host}:{self._port}"

    @property
    def port(self) -> int:
        """The port the server listens on (0 before the first start when 0 was asked for)."""
        return self._port

    @property
    def http_port(self) -> int | None:
        """The REST server's port (0 before the first start when 0 was asked for; None: no REST)."""
        return self._http_port

    @property
    def http_url(self) -> str | None:
        """``http://host:port`` of the REST API (``https`` with TLS), or None without a REST server."""
        if self._http_port is None:
            return None
        return http_url(self._host, self._http_port, tls=self._tls is not None)

    @property
    def engine(self) -> Engine:
        """The engine behind the server, opened (and replayed from the log) on first use."""
        # Not under the start/stop lock: the server's handlers read this on the emulator's loop,
        # and stop() holds that lock while it waits for the loop to shut down.
        engine = self._engine
        if engine is None:
            with self._engine_lock:
                if self._engine is None:
                    self._engine = Engine(
                        EventStore(self._db_path),
                        real_time=self._step_seconds is not None,
                        accept_any_workflow=self._accept_any_workflow,
                    )
                engine = self._engine
        return engine

    def start(self) -> CoreEmulator:
        """Open the log (replaying it), seed demo/scenario data, start serving; return self.

        Raises:
            RuntimeError: the port could not be bound.
        """
        with self._lock:
            if self._thread is not None:
                return self
            engine = self.engine
            if self._demo:
                scenario.seed_demo(engine)
            if self._scenario is not None:
                scenario.seed(engine, self._scenario)
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=self._run_loop, args=(loop,), name="cerebelum-core-emulator", daemon=True
            )
            thread.start()
            try:
                asyncio.run_coroutine_threadsafe(self._serve(), loop).result(_START_TIMEOUT)
            except BaseException:
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                loop.close()
                raise
            self._loop, self._thread = loop, thread
            return self

    def stop(self) -> None:
        """Stop serving (in-flight calls are cancelled) and close the log file; idempotent.

        An in-memory log stays open, so a later :meth:`start` serves the same executions.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is not None and thread is not None:
                shutdown = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
                try:
                    shutdown.result(_START_TIMEOUT)
                except TimeoutError:
                    raise RuntimeError(
                        f"the emulator on {self.address} did not shut down within {_START_TIMEOUT:.0f} s; "
                        f"its thread was at:\n{_stack_of(thread)}"
                    ) from None
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                loop.close()
            self._loop = self._thread = None
            with self._engine_lock:
                if self._engine is not None and self._db_path not in (None, ":memory:"):
                    self._engine.store.close()
                    self._engine = None

    def __enter__(self) -> CoreEmulator:  # noqa: PYI034 (Self needs Python 3.11)
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    async def _serve(self) -> None:
        # No SO_REUSEPORT: two emulators must never silently share (and split) one port.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        servicer = CoreServicer(
            lambda: self.engine,
            self._faults,
            list_broken=lambda: self._list_broken,
            bugs=lambda: self._bugs,
        )
        pb_grpc.add_WorkerServiceServicer_to_server(servicer, server)
        bind = f"{self._host}:{self._port}"
        try:
            if self._tls is not None:
                port = server.add_secure_port(bind, self._tls.credentials())
            else:
                port = server.add_insecure_port(bind)
        except RuntimeError as error:
            raise RuntimeError(f"Cerebelum Core emulator could not listen on {bind}: {error}") from error
        if port == 0:
            raise RuntimeError(f"Cerebelum Core emulator could not listen on {bind}")
        if self._http_port is not None:
            ssl_context = self._tls.ssl_context() if self._tls is not None else None
            rest = RestServer(self._rest_app, self._host, self._http_port, ssl_context)
            self._http_port = await rest.start()
            self._rest = rest
        try:
            await server.start()
        except BaseException:
            await self._stop_rest()
            raise
        self._server, self._port = server, port
        if self._step_seconds is not None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(self._step_seconds))

    async def _shutdown(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
            self._ticker = None
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None
        await self._stop_rest()
        # A clock move the ticker handed to a worker thread must end before the log is closed.
        await asyncio.get_running_loop().shutdown_default_executor()

    async def _stop_rest(self) -> None:
        if self._rest is not None:
            await self._rest.stop()
            self._rest = None

    async def _tick(self, step_seconds: float) -> None:
        """Real time: wake sleeps that are over; every ``step_seconds`` move running executions."""
        next_step = time.monotonic() + step_seconds
        while True:
            await asyncio.sleep(min(_TICK_SECONDS, step_seconds))
            try:
                engine = self.engine
                await asyncio.to_thread(engine.wake_due_sleeps)
                if time.monotonic() >= next_step:
                    next_step = max(next_step + step_seconds, time.monotonic())
                    await asyncio.to_thread(engine.advance, 1)
            except Exception:
                log.exception("the emulator's real-time clock failed to move executions on")

    # In-process clients ----------------------------------------------------------------------

    def httpx_transport(self) -> InProcessHttpxTransport:
        """An httpx transport (blocking and async) to this emulator's REST API without sockets,
        for tests that are not about the wire; works with ``http_port=None`` too (see ``in_process``)."""
        return InProcessHttpxTransport(self._rest_app, lambda: self._loop)

    @overload
    def client_transport(
        self,
        *,
        blocking: Literal[False] = False,
        token: str | None = None,
        timeout: float = 10.0,
        retry: RetryConfig | None = None,
    ) -> AsyncHttpTransport: ...

    @overload
    def client_transport(
        self,
        *,
        blocking: Literal[True],
        token: str | None = None,
        timeout: float = 10.0,
        retry: RetryConfig | None = None,
    ) -> SyncHttpTransport: ...

    def client_transport(
        self,
        *,
        blocking: bool = False,
        token: str | None = None,
        timeout: float = 10.0,
        retry: RetryConfig | None = None,
    ) -> AsyncHttpTransport | SyncHttpTransport:
        """The client's HTTP transport over :meth:`httpx_transport`: ``ExecutionClient(transport=
        core.client_transport())`` (``SyncExecutionClient`` with ``blocking=True``) talks to this
        emulator in process, with the REST client's retries and error mapping; ``token``,
        ``timeout`` and ``retry`` are the client's arguments of those names.

        For tests that are not about the wire (TLS, pools, proxies, peers need ``http_url``).
        """
        settings = ClientSettings.build(IN_PROCESS_URL, tls=None, token=token, timeout=timeout, retry=retry)
        if blocking:
            return SyncHttpTransport(settings, httpx_transport=self.httpx_transport())
        return AsyncHttpTransport(settings, httpx_transport=self.httpx_transport())

    # Executions ------------------------------------------------------------------------------

    def define_workflow(
        self, name: str, steps: Sequence[str], *, fail_at: str | int | None = None, fail_times: int = 1
    ) -> None:
        """Declare a workflow and its step names (as SubmitBlueprint does).

        With ``fail_at`` (a step name or index), executions started by ExecuteWorkflow (gRPC or
        REST) fail at that step on its first ``fail_times`` runs; a resume re-runs from there.
        Raises ValueError (bad names, unknown step, ``fail_times`` < 1).
        """
        steps = list(steps) if not isinstance(steps, str) else steps
        self.engine.define_workflow(name, steps, fail_at=fail_at, fail_times=fail_times)

    def start_execution(
        self,
        workflow_name: str,
        inputs: dict[str, Any] | None = None,
        fail_at: str | int | None = None,
        fail_times: int = 1,
        error_kind: str = "step_error",
        error_message: str = "boom",
        sleep_at: str | int | None = None,
        sleep_ms: int = 600_000,
        approval_at: str | int | None = None,
        approval_timeout_ms: int = 3_600_000,
        *,
        execution_id: str | None = None,
    ) -> str:
        """Start an execution, RUNNING at its first step; return its id.

        ``fail_at`` / ``sleep_at`` / ``approval_at`` name a step (or its index) where, when that
        step is advanced, the execution fails (for its first ``fail_times`` attempts), sleeps for
        ``sleep_ms`` or waits for :meth:`approve`. An approval that times out keeps waiting, with
        ``remaining_timeout_ms`` at 0. ``execution_id`` picks the id (default: a new UUID).

        Raises:
            ValueError: unknown workflow (with ``accept_any_workflow=False``), unknown step, taken id.
            TypeError: inputs that are not a dict.
        """
        plan = {
            "fail_at": fail_at,
            "fail_times": fail_times,
            "error_kind": error_kind,
            "error_message": error_message,
            "sleep_at": sleep_at,
            "sleep_ms": sleep_ms,
            "approval_at": approval_at,
            "approval_timeout_ms": approval_timeout_ms,
        }
        return self.engine.start_execution(workflow_name, inputs, plan=plan, execution_id=execution_id)

    def load_scenario(self, data: dict[str, Any]) -> list[str]:
        """Seed workflows and executions from a scenario dict (see ``scenario``); return new ids."""
        return scenario.seed(self.engine, data)

    def advance(self, steps: int = 1, execution_id: str | None = None) -> None:
        """Move every running execution (or only ``execution_id``) on by ``steps`` steps."""
        self.engine.advance(steps, execution_id)

    def advance_time(self, seconds: float) -> None:
        """Move the emulator's clock on by ``seconds``; sleeps that are over end."""
        self.engine.advance_time(seconds)

    def run_until_settled(self, execution_id: str | None = None) -> None:
        """Advance until the execution (or all) completed, failed, sleeps or waits for approval."""
        self.engine.run_until_settled(execution_id)

    def approve(self, execution_id: str, response: dict[str, Any] | None = None) -> None:
        """Grant a pending approval (with ``response``).

        Raises:
            ValueError: the execution is not waiting for approval.
        """
        self.engine.approve(execution_id, response)

    def complete(self, execution_id: str) -> None:
        """Force an execution to COMPLETED now. Raises ValueError for an unknown id."""
        self.engine.complete(execution_id)

    def corrupt(self, execution_id: str) -> None:
        """Append an event that cannot follow the execution's state, so it cannot be rebuilt.

        Core then answers FAILED with ``error.kind = "reconstruction_error"``.
        """
        self.engine.require(execution_id)
        self.engine.append_raw_event(execution_id, "step_completed", {"index": 10_000})

    # Faults ----------------------------------------------------------------------------------

    def fail_next(
        self,
        n: int,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        rpcs: Iterable[str] | str | None = None,
    ) -> None:
        """Fail the next ``n`` calls (of the RPC names in ``rpcs``; default any) with ``code``."""
        self._faults.fail_next(n, code, rpcs)

    def set_failure_rate(
        self,
        rate: float,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        rpcs: Iterable[str] | str | None = None,
        seed: int | None = None,
    ) -> None:
        """Fail each call (of ``rpcs``) with probability ``rate`` (0 turns it off)."""
        self._faults.set_failure_rate(rate, code, rpcs, seed)

    def set_latency(self, seconds: float, rpcs: Iterable[str] | str | None = None) -> None:
        """Delay every call (of ``rpcs``, default any) by ``seconds`` before handling it."""
        self._faults.set_latency(seconds, rpcs)

    def engine_busy(self, seconds: float) -> None:
        """For the next ``seconds``, answer REST status reads with HTTP 500 ``{"errors": {"detail":
        "Internal Server Error"}}``, as the released Core does while one of its engines is busy past
        5 s. gRPC status reads are not touched: over gRPC that Core fails every status read anyway."""
        self._faults.engine_busy(seconds)

    def hang(self, enabled: bool = True) -> None:
        """Accept calls and never answer them (a half-open network); the client's deadline ends them."""
        self._faults.hang(enabled)

    def set_rate_limit(self, limit: int | None = 1000, window_seconds: float | None = 60.0) -> None:
        """Refuse REST calls past ``limit`` per calendar window of ``window_seconds`` with 429, as
        Core's per-organisation limiter does (1,000 a minute, ``retry-after: 60``, body
        ``{"error": "rate_limit_exceeded", "limit": 1000}``); None turns it off. gRPC calls are not
        limited (the limiter was measured on Core's REST API; its gRPC reads crash on be56c90).
        ``window_seconds=None``: one window that never turns, so only ``limit`` more calls pass (for
        tests whose deadline, not a turning window, must end a wait)."""
        self._faults.set_rate_limit(limit, window_seconds)

    def rate_limited_count(self) -> int:
        """REST calls the rate limit refused so far (they count in :meth:`call_counts` too)."""
        return self._faults.rate_limited_count()

    def break_listing(self, enabled: bool = True) -> None:
        """Make ListExecutions hit an internal error (Core then answers OK with an empty list)."""
        self._list_broken = bool(enabled)

    # The real Core's bugs --------------------------------------------------------------------

    @property
    def real_core_bugs(self) -> RealCoreBugs:
        """The real release's bugs this emulator plays now (see ``bugs``)."""
        return self._bugs

    def set_real_core_bugs(self, bugs: RealCoreBugs | bool | None) -> None:
        """Play these bugs from now on (True: all, as measured; None or False: none)."""
        self._bugs = RealCoreBugs.coerce(bugs)

    def set_status_crash(self, enabled: bool = True) -> None:
        """gRPC status queries of existing executions (and non-empty list pages) fail with UNKNOWN."""
        self._bugs = RealCoreBugs(bool(enabled), self._bugs.resume_without_effect)

    def set_resume_without_effect(self, answer: str | None = "already_running") -> None:
        """Resuming a failed or completed execution changes nothing and answers ``answer``.

        ``"already_running"`` (while Core runs) or ``"resumed"`` (after a Core restart); None turns
        it off. Raises ValueError for another answer.
        """
        self._bugs = RealCoreBugs(self._bugs.status_crash, answer)

    # Assertions ------------------------------------------------------------------------------

    def resume_count(self, execution_id: str) -> int:
        """How many resumes (gRPC or REST) answered "resumed" or met the resume-without-effect bug.

        0 for an unknown id.
        """
        projection = self.engine.get(execution_id)
        return projection.resumes if projection is not None else 0

    def stopped(self, execution_id: str) -> bool:
        """Whether a REST ``stop`` ended the execution (and no resume started it again)."""
        return self.engine.is_stopped(execution_id)

    def approval_response(self, execution_id: str) -> dict[str, Any] | None:
        """The response the execution's latest approval was granted with, or None if never approved."""
        projection = self.engine.get(execution_id)
        return projection.approval_response if projection is not None else None

    def step_runs(self, execution_id: str) -> dict[str, int]:
        """How many times each step ran (failed, completed or asked for approval); {} if unknown.

        A step that asked for approval runs again once approved, as in Core.
        """
        projection = self.engine.get(execution_id)
        return dict(projection.step_runs) if projection is not None else {}

    def call_counts(self) -> dict[str, int]:
        """Calls received per RPC name (e.g. ``{"GetExecutionStatus": 3}``), failed ones included.

        REST calls count under the equivalent RPC's name, and as ``StopExecution``,
        ``ApproveExecution`` and ``GetExecutionEvents`` for the calls only REST has.
        """
        return self._faults.call_counts()

    def peers(self) -> set[str]:
        """Distinct client connections seen: gRPC ``context.peer()`` values (``ipv4:host:port``)
        and one ``http://host:port`` (or ``https://``) per REST TCP connection."""
        return self._faults.peers()

    def status(self, execution_id: str) -> models.ExecutionStatus:
        """The execution as GetExecutionStatus would answer now, as a models.ExecutionStatus.

        Raises:
            ExecutionNotFoundError: no execution has this id.
        """
        engine = self.engine
        projection = engine.get(execution_id)
        if projection is None:
            raise ExecutionNotFoundError(
                f"Execution {execution_id} not found", core_address=self.address, execution_id=execution_id
            )
        now = engine.now()
        return render.to_model(render.execution_status(projection, now), now)

    def execution_ids(self, state: models.ExecutionState | str | None = None) -> list[str]:
        """Ids of all executions in the order they started, or of those in ``state``."""
        if state is None:
            return self.engine.execution_ids()
        wanted = models.ExecutionState.coerce(state, field_name="state")
        phase = next((phase for phase in Phase if phase.value == wanted.value), None)
        return self.engine.execution_ids(phase) if phase is not None else []


def _stack_of(thread: threading.Thread) -> str:
    """Where ``thread`` is now, as a formatted stack (for an error that must say where it hung)."""
    frame = sys._current_frames().get(thread.ident or 0)
    return "".join(traceback.format_stack(frame)) if frame is not None else "(the thread has ended)"
