"""Turn a projection into the wire messages Core sends, with Core's conventions.

Times not tracked by Core stay unset, numbers inside Structs become doubles (Struct is JSON), and
``remaining_ms`` / ``remaining_timeout_ms`` are computed at ``now``, the moment of the query.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from cerebelum_provider import models
from cerebelum_provider.emulator.engine import approval_remaining_ms, sleep_remaining_ms
from cerebelum_provider.emulator.events import Projection
from cerebelum_provider.proto import worker_service_pb2 as pb


def timestamp(at: float) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp for epoch seconds (microsecond precision, as stored)."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(round(at * 1_000_000))
    return stamp


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    """A Struct holding ``data`` (its numbers come back as floats, as from Core)."""
    message = struct_pb2.Struct()
    message.update(data)
    return message


def not_found(execution_id: str) -> pb.ExecutionStatus:
    """Core's answer for an unknown id: OK, UNSPECIFIED, workflow "unknown", error not_found."""
    return pb.ExecutionStatus(
        execution_id=execution_id,
        workflow_name="unknown",
        status=pb.EXECUTION_STATE_UNSPECIFIED,
        error=pb.ErrorInfo(kind="not_found", message=f"Execution {execution_id} not found"),
    )


def execution_status(projection: Projection, now: float) -> pb.ExecutionStatus:
    """The ExecutionStatus Core would rebuild for this execution at ``now``."""
    message = pb.ExecutionStatus(
        execution_id=projection.execution_id,
        workflow_name=projection.workflow_name,
        status=pb.ExecutionState.Value(projection.phase.value),
        started_at=timestamp(projection.started_at),
        current_step_index=projection.current_index,
        total_steps=len(projection.steps),
        current_step_name=projection.current_step_name,
        inputs=struct(projection.inputs),
    )
    if projection.completed_at is not None:
        message.completed_at.CopyFrom(timestamp(projection.completed_at))
    for index, name in enumerate(projection.steps[: projection.current_index]):
        step = message.completed_steps.add(step_name=name, step_index=index, status="completed")
        output = projection.step_outputs.get(name)
        if output is not None:
            step.output.CopyFrom(struct(output))
    for name, output in projection.step_outputs.items():
        message.step_outputs[name].CopyFrom(struct(output))
    if projection.reconstruction_error is not None:
        message.error.CopyFrom(
            pb.ErrorInfo(
                kind="reconstruction_error",
                message=f"Failed to reconstruct state: {projection.reconstruction_error}",
            )
        )
    elif projection.error is not None:
        message.error.CopyFrom(pb.ErrorInfo(kind=projection.error[0], message=projection.error[1]))
    if projection.sleep is not None:
        sleep = projection.sleep
        message.sleep_info.CopyFrom(
            pb.SleepInfo(
                duration_ms=sleep.duration_ms,
                sleep_started_at=timestamp(sleep.started_at),
                remaining_ms=sleep_remaining_ms(projection, now),
                data=struct(sleep.data),
            )
        )
    if projection.approval is not None:
        approval = projection.approval
        message.approval_info.CopyFrom(
            pb.ApprovalInfo(
                approval_type=approval.approval_type,
                data=struct(approval.data),
                timeout_ms=approval.timeout_ms,
                requested_at=timestamp(approval.requested_at),
                remaining_timeout_ms=approval_remaining_ms(projection, now),
            )
        )
    return message


class StatusCache:
    """Rendered statuses, reused while an execution's projection is the same object.

    Projections are immutable and replaced by every event, so identity says "unchanged". Sleeping
    and waiting executions are rendered afresh: their remaining times depend on the query time.
    Not thread-safe: one cache per server, used on its event loop.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Projection, pb.ExecutionStatus]] = {}

    def status(self, projection: Projection, now: float) -> pb.ExecutionStatus:
        """What :func:`execution_status` answers; callers must not modify the message."""
        if projection.sleep is not None or projection.approval is not None:
            return execution_status(projection, now)
        cached = self._entries.get(projection.execution_id)
        if cached is not None and cached[0] is projection:
            return cached[1]
        message = execution_status(projection, now)
        self._entries[projection.execution_id] = (projection, message)
        return message


def to_model(message: pb.ExecutionStatus, now: float) -> models.ExecutionStatus:
    """The models.ExecutionStatus our client would make of ``message`` (elapsed time ends at ``now``)."""
    # The client's own converter, so that core.status() and a client's answer are equal.
    from cerebelum_provider.client._convert import status_from_proto

    return status_from_proto(message, now=datetime.fromtimestamp(now, tz=timezone.utc))
