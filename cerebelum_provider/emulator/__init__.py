"""A local Cerebelum Core: a real gRPC server that answers like Core, for tests and DAG development.

``with CoreEmulator() as core:`` gives ``core.address`` to point a client at; executions are
event-sourced in SQLite (a file or in memory), move on a manual or real-time clock, and faults
(latency, failures, a required token, TLS, hangs) are available on demand. The command
``cerebelum-emulator serve`` runs one from the shell.
"""

from cerebelum_provider.emulator.engine import DEFAULT_TIMELINE
from cerebelum_provider.emulator.server import CoreEmulator, EmulatorTLS

__all__ = ["DEFAULT_TIMELINE", "CoreEmulator", "EmulatorTLS"]
