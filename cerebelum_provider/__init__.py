"""Apache Airflow provider and asyncio client (gRPC or REST) for Cerebelum Core.

The models and errors import at no cost. The clients pull in grpc and protobuf, so they are
loaded on first use: a DAG file that only imports the sensor or the operators never pays for
them at parse time (bench/bench_import_time.py measures it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cerebelum_provider._version import __version__
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
    ExecutionNotFoundError,
    RequestRefusedError,
    RerunRefusedError,
    UnsupportedOperationError,
    WorkflowStartError,
)
from cerebelum_provider.models import (
    ApprovalInfo,
    ExecutionHandle,
    ExecutionState,
    ExecutionStatus,
    Rerun,
    ResumeAnswer,
    SleepInfo,
    StepStatus,
)

if TYPE_CHECKING:
    from cerebelum_provider.client import ExecutionClient, RetryConfig, SyncExecutionClient, TLSConfig

_LAZY_CLIENT_NAMES = ("ExecutionClient", "SyncExecutionClient", "TLSConfig", "RetryConfig")


def __getattr__(name: str) -> Any:
    if name in _LAZY_CLIENT_NAMES:
        from cerebelum_provider import client

        return getattr(client, name)
    raise AttributeError(f"module 'cerebelum_provider' has no attribute {name!r}")


__all__ = [
    "ApprovalInfo",
    "CerebelumAuthError",
    "CerebelumError",
    "CerebelumRPCError",
    "CerebelumTLSError",
    "CoreAPIMismatchError",
    "CoreBusyError",
    "CoreInternalError",
    "CoreUnavailableError",
    "ErrorCode",
    "ExecutionClient",
    "ExecutionHandle",
    "ExecutionNotFoundError",
    "ExecutionState",
    "ExecutionStatus",
    "RequestRefusedError",
    "Rerun",
    "RerunRefusedError",
    "ResumeAnswer",
    "RetryConfig",
    "SleepInfo",
    "StepStatus",
    "SyncExecutionClient",
    "TLSConfig",
    "UnsupportedOperationError",
    "WorkflowStartError",
    "__version__",
]
