"""What ``CerebelumExecutionTrigger`` yields: one typed event contract, JSON-safe on the wire.

The trigger builds an :class:`ExecutionTriggerEvent` and yields its :meth:`~ExecutionTriggerEvent.to_payload`;
the task side reads it back with :meth:`~ExecutionTriggerEvent.from_payload` and turns it into the
task's outcome with ``cerebelum_provider._outcome.task_outcome``. Pure Python: no Airflow, grpc or
protobuf import, so sensors and operators can import it at DAG-parse time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class EventStatus(str, enum.Enum):
    """How a wait ended."""

    SUCCESS = "success"  # the execution reached a success state
    FAILURE = "failure"  # the execution reached a failure state
    ERROR = "error"  # the wait could not go on (unknown execution, refused token, Core down too long, ...)
    TIMEOUT = "timeout"  # the deadline passed first


#: ``error_type`` of an event about a connection that could not be read or is invalid.
INVALID_CONNECTION = "InvalidConnection"


@dataclass(frozen=True)
class ExecutionTriggerEvent:
    """One trigger event.

    ``execution`` is the last status seen, as ``ExecutionStatus.to_xcom()`` made it (outputs only
    when asked for, bounded in size); ``state`` is its wire state. ``error_type`` names the
    ``CerebelumError`` class (or ``INVALID_CONNECTION``) of an ``ERROR``; ``core_address`` is
    where the trigger asked.
    """

    status: EventStatus
    execution_id: str
    message: str
    state: str | None = None
    execution: dict[str, Any] | None = None
    error_type: str | None = None
    core_address: str | None = None

    def to_payload(self) -> dict[str, Any]:
        """The JSON-safe dict the trigger yields (``TriggerEvent.payload``)."""
        return {
            "status": self.status.value,
            "execution_id": self.execution_id,
            "state": self.state,
            "message": self.message,
            "execution": self.execution,
            "error_type": self.error_type,
            "core_address": self.core_address,
        }

    @classmethod
    def from_payload(cls, payload: object) -> ExecutionTriggerEvent:
        """Read a payload back.

        Raises:
            TypeError: not a dict.
            ValueError: its ``status`` is none of :class:`EventStatus`.
        """
        if not isinstance(payload, dict):
            raise TypeError(f"a Cerebelum trigger event must be a dict, got {payload!r}")
        try:
            status = EventStatus(payload.get("status"))
        except ValueError:
            raise ValueError(f"a Cerebelum trigger event has an unknown status: {payload!r}") from None
        execution = payload.get("execution")
        return cls(
            status=status,
            execution_id=str(payload.get("execution_id") or "?"),
            message=str(payload.get("message") or f"the Cerebelum trigger ended with {status.value}"),
            state=payload.get("state"),
            execution=execution if isinstance(execution, dict) else None,
            error_type=payload.get("error_type"),
            core_address=payload.get("core_address"),
        )
