"""A local Cerebelum Core: real gRPC and REST servers that answer like Core, for tests and DAG development.

From Python::

    from cerebelum_provider.emulator import CoreEmulator

    with CoreEmulator() as core:                      # in-memory log, manual clock
        core.define_workflow("orders", ["validate", "charge", "ship", "notify"])
        execution_id = core.start_execution("orders", fail_at="ship")
        core.run_until_settled(execution_id)          # FAILED at "ship"
        ...                                           # point a client at core.address / core.http_url
        core.resume_count(execution_id)               # how many times it answered "resumed"

From a shell (prints ``Cerebelum Core emulator listening on HOST:PORT``, followed by
`` (REST http://HOST:HTTP_PORT)`` with ``--http-port``; Ctrl-C stops it)::

    cerebelum-emulator serve --port 9090 --http-port 4000 --db core.sqlite --demo --step-seconds 2

Executions are event-sourced in SQLite (a file survives restarts, even SIGKILL) and move on a
manual clock (``advance()``, ``advance_time()``) or, with ``step_seconds``, on real time. What the
RPCs answer follows ../shared/core-contract.md, quirks included; listings are in execution id
text order, as Core's.

The public API of :class:`CoreEmulator`:

- Construction: ``CoreEmulator(port=0, db_path=None, step_seconds=None, latency=0.0, token=None,
  tls=None, accept_any_workflow=True, demo=False, *, host="127.0.0.1", scenario_data=None,
  http_port=0, real_core_bugs=None)``; ``start()``/``stop()`` or ``with``. ``address``, ``port``,
  ``http_port`` and ``http_url`` (``http://127.0.0.1:PORT``, https with ``tls``; None when
  ``http_port=None`` turned REST off).
- Workflows and executions: ``define_workflow(name, steps, *, fail_at=None, fail_times=1)`` (``fail_at``
  makes executions that ExecuteWorkflow starts, over gRPC or REST, fail there ``fail_times`` times),
  ``start_execution(...)``, ``load_scenario(data)``, ``advance()``, ``advance_time()``,
  ``run_until_settled()``, ``approve(execution_id, response=None)``, ``complete()``, ``corrupt()``.
- Faults, for gRPC and REST alike: ``fail_next()``, ``set_failure_rate()``, ``set_latency()``,
  ``hang()``, ``break_listing()``, ``token=`` (gRPC metadata or REST header
  ``authorization: Bearer <token>``) and ``tls=EmulatorTLS(...)`` (mTLS with ``client_ca_pem``).
  Over REST a fault becomes 503 (UNAVAILABLE), 504 (DEADLINE_EXCEEDED), 429 with ``retry-after``
  (RESOURCE_EXHAUSTED), 401 (UNAUTHENTICATED), 403 (PERMISSION_DENIED) or 500 (any other code).
- The real release's bugs (off by default): ``real_core_bugs=RealCoreBugs(...)`` or ``True``,
  ``set_status_crash()``, ``set_resume_without_effect("already_running" | "resumed" | None)``;
  see ``bugs``.
- In-process clients, for tests that are not about the wire (no sockets, also with
  ``http_port=None``): ``client_transport(*, blocking=False, token=None, timeout=10.0,
  retry=None)`` for ``ExecutionClient(transport=...)`` (``blocking=True``:
  ``SyncExecutionClient``), and ``httpx_transport()``, the httpx transport beneath it
  (``in_process``).
- Assertions: ``status()``, ``execution_ids()``, ``resume_count()``, ``step_runs()``,
  ``stopped()``, ``approval_response()``, ``call_counts()`` (REST calls under the equivalent RPC's
  name; ``StopExecution``, ``ApproveExecution``, ``GetExecutionEvents`` for REST-only calls) and
  ``peers()`` (one entry per client connection, REST ones as ``http://host:port``).

The REST API (``rest``): ``GET /health``, ``GET /api/v1/workflows``, and under
``/api/v1/executions``: ``GET`` (list), ``POST`` (start), ``GET /{id}``, ``GET /{id}/events``,
``POST /{id}/resume``, ``POST /{id}/stop``, ``POST /{id}/approve``, with Core's shapes and codes
(../shared/real-core/README.md).
"""

from cerebelum_provider.emulator.bugs import RealCoreBugs
from cerebelum_provider.emulator.engine import DEFAULT_TIMELINE
from cerebelum_provider.emulator.server import CoreEmulator, EmulatorTLS

__all__ = ["DEFAULT_TIMELINE", "CoreEmulator", "EmulatorTLS", "RealCoreBugs"]
