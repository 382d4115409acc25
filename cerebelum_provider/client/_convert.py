"""Wire messages -> plain models (and the few plain values -> wire values the requests need).

Every converter here accepts any message Core can send, however odd: unset or out-of-range
timestamps become None, unknown enum numbers become ``ExecutionState.UNSPECIFIED``, NaN and
infinities stay floats, huge Structs convert like small ones. Nothing in here raises on data,
except Core's OK-with-``not_found`` answer, which is turned into ``ExecutionNotFoundError``.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from cerebelum_provider._arguments import shown
from cerebelum_provider.exceptions import ExecutionNotFoundError
from cerebelum_provider.models import (
    ApprovalInfo,
    ExecutionHandle,
    ExecutionState,
    ExecutionStatus,
    PollAnswer,
    SleepInfo,
    StepStatus,
)
from cerebelum_provider.proto import worker_service_pb2 as pb

#: The ``error.kind`` Core puts in an OK answer about an id it does not know.
NOT_FOUND_KIND = "not_found"

_STATE_BY_NUMBER: dict[int, ExecutionState] = {
    int(number): ExecutionState(name) for name, number in pb.ExecutionState.items()
}
_NUMBER_BY_STATE = {state: number for number, state in _STATE_BY_NUMBER.items()}


def state_from_wire(number: int) -> ExecutionState:
    """The model state for a wire enum number; a number this client does not know is UNSPECIFIED."""
    return _STATE_BY_NUMBER.get(number, ExecutionState.UNSPECIFIED)


def state_to_wire(state: ExecutionState) -> pb.ExecutionState.ValueType:
    """The wire enum number of a model state."""
    return pb.ExecutionState.ValueType(_NUMBER_BY_STATE[state])


def timestamp_to_datetime(message: Any, field_name: str) -> datetime | None:
    """``message.<field_name>`` as an aware UTC datetime, or None when unset or out of range."""
    if not message.HasField(field_name):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field_name)
    try:
        return stamp.ToDatetime(tzinfo=timezone.utc)
    except (ValueError, OverflowError, OSError):
        # Outside what datetime can hold (year 1..9999): no usable moment, not a crash.
        return None


def value_to_python(value: struct_pb2.Value) -> Any:
    """A ``google.protobuf.Value`` as plain Python; integral numbers come back as ``int``.

    Written out rather than using ``json_format.MessageToDict``, which raises on NaN and
    infinities: Core may send them and a status query must not crash on a payload.
    """
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return _number(value.number_value)
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_python(value.struct_value)
    if kind == "list_value":
        return [value_to_python(item) for item in value.list_value.values]
    return None  # null_value, or no kind set at all


def struct_to_python(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A ``google.protobuf.Struct`` as a plain dict (see :func:`value_to_python`)."""
    return {key: value_to_python(item) for key, item in struct.fields.items()}


def _number(number: float) -> int | float:
    # Struct numbers are doubles on the wire: Core sends an input 123 back as 123.0.
    if math.isfinite(number) and number.is_integer():
        return int(number)
    return number


def python_to_struct(data: dict[str, Any], *, field_name: str) -> struct_pb2.Struct:
    """A plain dict as a ``google.protobuf.Struct``.

    Raises:
        TypeError: ``data`` is not a dict with string keys holding JSON-like values
            (None, bool, int, float, str, lists and dicts of those).
    """
    if not isinstance(data, dict):
        raise TypeError(
            f"{field_name} must be a dict of JSON-like values, got {type(data).__name__} {shown(data)}"
        )
    _check_json_like(data, field_name)
    struct = struct_pb2.Struct()
    struct.update(data)
    return struct


def _check_json_like(value: Any, path: str) -> None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json_like(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path} has key {key!r} of type {type(key).__name__}; keys must be strings")
            _check_json_like(item, f"{path}[{key!r}]")
        return
    raise TypeError(
        f"{path} is {type(value).__name__} {shown(value)}; expected None, bool, number, str, list or dict"
    )


def error_to_dict(message: Any) -> dict[str, str] | None:
    """``message.error`` (an ``ErrorInfo``) as ``{"kind", "message", "stacktrace"}``, or None when unset."""
    if not message.HasField("error"):
        return None
    error = message.error
    return {"kind": error.kind, "message": error.message, "stacktrace": error.stacktrace}


def step_from_proto(step: pb.StepStatus) -> StepStatus:
    """A ``StepStatus`` model from its wire message."""
    return StepStatus(
        step_name=step.step_name,
        step_index=step.step_index,
        status=step.status,
        started_at=timestamp_to_datetime(step, "started_at"),
        completed_at=timestamp_to_datetime(step, "completed_at"),
        duration_seconds=step.duration_seconds,
        output=struct_to_python(step.output) if step.HasField("output") else None,
        error=error_to_dict(step),
    )


def sleep_from_proto(sleep: pb.SleepInfo) -> SleepInfo:
    """A ``SleepInfo`` model from its wire message."""
    return SleepInfo(
        duration_ms=sleep.duration_ms,
        sleep_started_at=timestamp_to_datetime(sleep, "sleep_started_at"),
        remaining_ms=sleep.remaining_ms,
        data=struct_to_python(sleep.data) if sleep.HasField("data") else None,
    )


def approval_from_proto(approval: pb.ApprovalInfo) -> ApprovalInfo:
    """An ``ApprovalInfo`` model from its wire message."""
    return ApprovalInfo(
        approval_type=approval.approval_type,
        data=struct_to_python(approval.data) if approval.HasField("data") else None,
        timeout_ms=approval.timeout_ms,
        requested_at=timestamp_to_datetime(approval, "requested_at"),
        remaining_timeout_ms=approval.remaining_timeout_ms,
    )


def status_from_proto(message: pb.ExecutionStatus, *, now: datetime | None = None) -> ExecutionStatus:
    """An ``ExecutionStatus`` model from its wire message; never raises on odd data.

    ``now`` (aware UTC, default: the current time) ends ``elapsed_seconds`` for an execution
    that has not completed.
    """
    started_at = timestamp_to_datetime(message, "started_at")
    completed_at = timestamp_to_datetime(message, "completed_at")
    elapsed_seconds = None
    if started_at is not None:
        end = completed_at or now or datetime.now(timezone.utc)
        # Clocks of Core and client differ; a start "in the future" is 0 s elapsed, not negative.
        elapsed_seconds = max(0, int((end - started_at).total_seconds()))
    total_steps = message.total_steps
    progress = message.current_step_index / total_steps * 100.0 if total_steps > 0 else 0.0
    return ExecutionStatus(
        execution_id=message.execution_id,
        workflow_name=message.workflow_name,
        status=state_from_wire(message.status),
        started_at=started_at,
        completed_at=completed_at,
        current_step_index=message.current_step_index,
        total_steps=total_steps,
        current_step_name=message.current_step_name,
        progress_percentage=progress,
        completed_steps=[step_from_proto(step) for step in message.completed_steps],
        inputs=struct_to_python(message.inputs) if message.HasField("inputs") else {},
        step_outputs={name: struct_to_python(output) for name, output in message.step_outputs.items()},
        error=error_to_dict(message),
        sleep_info=sleep_from_proto(message.sleep_info) if message.HasField("sleep_info") else None,
        approval_info=approval_from_proto(message.approval_info)
        if message.HasField("approval_info")
        else None,
        elapsed_seconds=elapsed_seconds,
    )


def is_not_found(message: pb.ExecutionStatus) -> bool:
    """True for Core's OK answer about an unknown id (``error.kind == "not_found"``)."""
    return message.HasField("error") and message.error.kind == NOT_FOUND_KIND


def found_status_from_proto(
    message: pb.ExecutionStatus, *, execution_id: str, core_address: str
) -> ExecutionStatus:
    """Like :func:`status_from_proto`, for a GetExecutionStatus answer about ``execution_id``.

    Raises:
        ExecutionNotFoundError: Core answered OK with ``error.kind == "not_found"``.
    """
    check_found(message, execution_id=execution_id, core_address=core_address)
    return status_from_proto(message)


def check_found(message: pb.ExecutionStatus, *, execution_id: str, core_address: str) -> None:
    """Raise for Core's OK answer about an unknown id.

    Raises:
        ExecutionNotFoundError: ``error.kind == "not_found"``.
    """
    if is_not_found(message):
        raise ExecutionNotFoundError(
            f"Cerebelum Core at {core_address} knows no execution {execution_id!r}",
            core_address=core_address,
            execution_id=execution_id,
        )


def poll_answer_from_proto(
    message: pb.ExecutionStatus, *, execution_id: str, core_address: str
) -> PollAnswer:
    """A :class:`PollAnswer` for a GetExecutionStatus answer: the state and sleep read now, the rest
    converted by :func:`status_from_proto` if and when it is asked for.

    Raises:
        ExecutionNotFoundError: Core answered OK with ``error.kind == "not_found"``.
    """
    check_found(message, execution_id=execution_id, core_address=core_address)
    answered_at = time.time()
    return PollAnswer(
        state_from_wire(message.status),
        message.sleep_info.remaining_ms if message.HasField("sleep_info") else None,
        lambda: status_from_proto(message, now=datetime.fromtimestamp(answered_at, timezone.utc)),
    )


def handle_from_proto(message: pb.ExecutionHandle) -> ExecutionHandle:
    """An ``ExecutionHandle`` model from its wire message."""
    return ExecutionHandle(
        execution_id=message.execution_id,
        status=message.status,
        started_at=timestamp_to_datetime(message, "started_at"),
    )
