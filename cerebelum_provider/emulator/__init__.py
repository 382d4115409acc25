"""A local Cerebelum Core: a real gRPC server that answers like Core, for tests and DAG development.

From Python::

    from cerebelum_provider.emulator import CoreEmulator

    with CoreEmulator() as core:                      # in-memory log, manual clock
        core.define_workflow("orders", ["validate", "charge", "ship", "notify"])
        execution_id = core.start_execution("orders", fail_at="ship")
        core.run_until_settled(execution_id)          # FAILED at "ship"
        ...                                           # point a client at core.address
        core.resume_count(execution_id)               # how many times it answered "resumed"

From a shell (prints ``Cerebelum Core emulator listening on HOST:PORT``; Ctrl-C stops it)::

    cerebelum-emulator serve --port 9090 --db core.sqlite --demo --step-seconds 2

Executions are event-sourced in SQLite (a file survives restarts, even SIGKILL) and move on a
manual clock (``advance()``, ``advance_time()``) or, with ``step_seconds``, on real time. Faults
(latency, next-N failures, a failure rate, a required bearer token, TLS/mTLS, hangs) are
available on demand. What the RPCs answer follows ../shared/core-contract.md, quirks included.
"""

from cerebelum_provider.emulator.engine import DEFAULT_TIMELINE
from cerebelum_provider.emulator.server import CoreEmulator, EmulatorTLS

__all__ = ["DEFAULT_TIMELINE", "CoreEmulator", "EmulatorTLS"]
