"""One comparable shape for an execution status, whichever client produced it.

The published cerebelum-sdk's ExecutionStatus and ours have the same attribute names, so one
function turns either into the same JSON-safe dict. Instants become epoch seconds: the SDK
returns naive local-time datetimes and ``.timestamp()`` reads them as local time, which gives
back the instant Core sent; ours are aware UTC datetimes. Imports nothing from either client
(nor pytest), so the peer scripts run in their own interpreters can use it too.
"""

from __future__ import annotations

from typing import Any

#: How far apart two epoch-second readings of one instant may be (float rounding only).
SAME_INSTANT = 1e-6


def _epoch(moment: Any) -> float | None:
    return moment.timestamp() if moment is not None else None


def peer_shape(status: Any) -> dict[str, Any]:
    """The fields both clients report, in one comparable dict."""
    return {
        "execution_id": status.execution_id,
        "workflow_name": status.workflow_name,
        "status": status.status.value,
        "started_at": _epoch(status.started_at),
        "completed_at": _epoch(status.completed_at),
        "current_step_index": status.current_step_index,
        "total_steps": status.total_steps,
        "current_step_name": status.current_step_name,
        "progress_percentage": status.progress_percentage,
        "completed_steps": [
            {"step_name": step.step_name, "step_index": step.step_index, "status": step.status}
            for step in status.completed_steps
        ],
        "inputs": status.inputs,
        "step_outputs": status.step_outputs,
        "error": status.error,
        "sleep_info": None
        if status.sleep_info is None
        else {"duration_ms": status.sleep_info.duration_ms, "data": status.sleep_info.data},
        "approval_info": None
        if status.approval_info is None
        else {
            "approval_type": status.approval_info.approval_type,
            "timeout_ms": status.approval_info.timeout_ms,
            "data": status.approval_info.data,
        },
    }


def assert_same_status(theirs: dict[str, Any], ours: dict[str, Any]) -> None:
    """Two peer shapes describe the same status: instants to the microsecond, numbers by value
    (the SDK's 123.0 equals our 123)."""
    assert theirs.keys() == ours.keys(), (sorted(theirs), sorted(ours))
    for key in theirs:
        if key in ("started_at", "completed_at") and theirs[key] is not None and ours[key] is not None:
            assert abs(theirs[key] - ours[key]) <= SAME_INSTANT, (key, theirs[key], ours[key])
        else:
            assert theirs[key] == ours[key], (key, theirs[key], ours[key])
