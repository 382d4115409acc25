"""The emulator's executions as Core's REST API shows them: Core's event log and its JSON shapes.

Core stores one row per domain event (``ExecutionStartedEvent``, ``StepExecutedEvent``...) with a
per-execution ``version`` from 0, and its REST controller derives a listing summary and the
"current step" from the last of those rows. This module translates the emulator's own log into
those rows and derives the same answers from them, so the REST face and the gRPC face read one
state. Pure functions: nothing here touches the engine or the network.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from cerebelum_provider.emulator import events as ev
from cerebelum_provider.emulator.events import Event, Phase, Projection

#: Core's ``workflow_module`` for every blueprint execution (the engine runs blueprints through it).
DELEGATING_WORKFLOW = "Elixir.Cerebelum.WorkflowDelegatingWorkflow"

_TERMINAL_OR_PAUSED = frozenset(
    ["ExecutionCompletedEvent", "ExecutionFailedEvent", "SleepStartedEvent", "ApprovalRequestedEvent"]
)

_STATE_WORDS = {
    Phase.RUNNING: "running",
    Phase.COMPLETED: "completed",
    Phase.FAILED: "failed",
    Phase.SLEEPING: "sleeping",
    Phase.WAITING_FOR_APPROVAL: "waiting_for_approval",
}

# Event types of the emulator's log and the one Core row each writes (None: Core writes none).
_CORE_TYPES = {
    ev.EXECUTION_STARTED: "ExecutionStartedEvent",
    ev.STEP_STARTED: None,
    ev.STEP_COMPLETED: "StepExecutedEvent",
    ev.STEP_FAILED: "StepFailedEvent",
    ev.SLEEP_STARTED: "SleepStartedEvent",
    ev.APPROVAL_REQUESTED: "ApprovalRequestedEvent",
    ev.APPROVAL_GRANTED: "ApprovalReceivedEvent",
    ev.EXECUTION_COMPLETED: "ExecutionCompletedEvent",
    ev.EXECUTION_FAILED: "ExecutionFailedEvent",
    # A resumed engine writes nothing until its step runs again.
    ev.EXECUTION_RESUMED: None,
}


def core_type(event: Event) -> str | None:
    """The type of the last Core row ``event`` writes, or None when Core writes nothing for it."""
    if event.type == ev.RESUME_WITHOUT_EFFECT:
        # After a restart Core's engine comes back failed and records the failure once more.
        return "ExecutionFailedEvent" if event.data.get("records_failure") else None
    return _CORE_TYPES.get(event.type)


def matches_status(last_core_type: str | None, word: str) -> bool:
    """Core's ``matches_status?``: does an execution whose latest row is ``last_core_type`` match."""
    if word == "running":
        return last_core_type not in _TERMINAL_OR_PAUSED
    wanted = {
        "completed": "ExecutionCompletedEvent",
        "failed": "ExecutionFailedEvent",
        "sleeping": "SleepStartedEvent",
        "waiting_for_approval": "ApprovalRequestedEvent",
    }.get(word)
    return wanted is not None and last_core_type == wanted


def stored_as_core_stores(value: Any) -> Any:
    """A value as Core's event store writes it: atoms as strings, so ``true``/``false`` become
    ``"true"``/``"false"``, at any depth (numbers are as they arrived: floats over gRPC's Struct)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return {str(key): stored_as_core_stores(item) for key, item in value.items()}
    if isinstance(value, list):
        return [stored_as_core_stores(item) for item in value]
    return value


def iso(at: float) -> str:
    """Epoch seconds as Elixir's ``DateTime.to_iso8601`` writes a microsecond UTC time."""
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error_text(kind: str, message: str, step_name: str | None) -> str:
    """Core's ``ErrorInfo.format`` for a step that raised: the kind stands for the exception type."""
    return f"Exception in step :{step_name or ''} - {kind}: {message}"


def core_events(execution_id: str, log: list[Event]) -> list[dict[str, Any]]:
    """The rows Core's event store holds for the execution: ``{version, type, data, timestamp}``."""
    rows: list[dict[str, Any]] = []
    steps: list[str] = []
    results: dict[str, Any] = {}
    sleeping_since: float | None = None
    approval_since: float | None = None
    last_error: dict[str, Any] | None = None

    def step_name(data: dict[str, Any]) -> str | None:
        index = data.get("index")
        return steps[index] if isinstance(index, int) and 0 <= index < len(steps) else None

    def add(core: str, at: float, data: dict[str, Any]) -> None:
        version = len(rows)
        body = {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"cerebelum-emulator:{execution_id}:{version}")),
            "execution_id": execution_id,
            **data,
            "timestamp": iso(at),
            "version": version,
        }
        rows.append({"version": version, "type": core, "data": body, "timestamp": iso(at)})

    for event in log:
        data = event.data
        if event.type == ev.EXECUTION_STARTED:
            steps = list(data.get("steps") or [])
            add(
                "ExecutionStartedEvent",
                event.at,
                {
                    "workflow_module": DELEGATING_WORKFLOW,
                    "workflow_version": "unknown",
                    "inputs": stored_as_core_stores(data.get("inputs") or {}),
                    # Core's ExecuteWorkflow does not pass the request's options to the engine.
                    "correlation_id": None,
                    "tags": [],
                    "blueprint_name": data.get("workflow_name"),
                },
            )
        elif event.type == ev.STEP_COMPLETED:
            name = step_name(data)
            if sleeping_since is not None:
                add("SleepCompletedEvent", event.at, {"actual_duration_ms": _ms(event.at - sleeping_since)})
                sleeping_since = None
            output = data.get("output") or {}
            if name is not None:
                results[name] = output
            add(
                "StepExecutedEvent",
                event.at,
                {
                    "step_name": name,
                    "step_index": data.get("index"),
                    "args": [],
                    "result": output,
                    "duration_ms": 0,
                },
            )
        elif event.type == ev.STEP_FAILED:
            name = step_name(data)
            kind, message = str(data.get("kind", "")), str(data.get("message", ""))
            last_error = {"step": name, "kind": kind, "message": message}
            add(
                "StepFailedEvent",
                event.at,
                {
                    "step_name": name,
                    "step_index": data.get("index"),
                    "error_kind": "exception",
                    "error_reason": {"__exception__": kind, "message": message},
                    "error_message": error_text(kind, message, name),
                },
            )
        elif event.type == ev.SLEEP_STARTED:
            sleeping_since = event.at
            duration = int(data.get("duration_ms", 0))
            add(
                "SleepStartedEvent",
                event.at,
                {
                    "step_name": step_name(data),
                    "duration_ms": duration,
                    "resume_at": iso(event.at + duration / 1000),
                },
            )
        elif event.type == ev.APPROVAL_REQUESTED:
            approval_since = event.at
            add(
                "ApprovalRequestedEvent",
                event.at,
                {
                    "step_name": step_name(data),
                    "approval_type": data.get("approval_type", "manual"),
                    "approval_data": data.get("data") or {},
                    "timeout_ms": data.get("timeout_ms"),
                },
            )
        elif event.type == ev.APPROVAL_GRANTED:
            elapsed = _ms(event.at - approval_since) if approval_since is not None else 0
            add(
                "ApprovalReceivedEvent",
                event.at,
                {
                    "step_name": step_name(data),
                    "approval_response": data.get("response") or {},
                    "elapsed_ms": elapsed,
                },
            )
        elif event.type == ev.EXECUTION_COMPLETED:
            add(
                "ExecutionCompletedEvent",
                event.at,
                {"results": dict(results), "total_steps": len(steps), "total_duration_ms": 0, "iteration": 0},
            )
        elif event.type == ev.EXECUTION_FAILED or core_type(event) == "ExecutionFailedEvent":
            error = last_error or {
                "step": None,
                "kind": str(data.get("kind", "")),
                "message": str(data.get("message", "")),
            }
            add(
                "ExecutionFailedEvent",
                event.at,
                {
                    "error_kind": "exception",
                    "error_reason": {"__exception__": error["kind"], "message": error["message"]},
                    "error_message": error_text(error["kind"], error["message"], error["step"]),
                    "failed_step": error["step"],
                    "partial_results": dict(results),
                },
            )
    return rows


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def current_step(rows: list[dict[str, Any]]) -> str | None:
    """Core's ``extract_current_step``: the step named by the latest step or approval row."""
    for row in reversed(rows):
        if row["type"] in (
            "StepStartedEvent",
            "StepExecutedEvent",
            "StepCompletedEvent",
            "StepFailedEvent",
            "ApprovalRequestedEvent",
        ):
            return row["data"].get("step_name")
    return None


def current_step_data(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Core's ``extract_current_step_data``: the latest step result or approval data that is a map."""
    for row in reversed(rows):
        data = row["data"]
        if row["type"] in ("StepExecutedEvent", "StepCompletedEvent"):
            result = data.get("result")
            if isinstance(result, dict):
                return result
        elif row["type"] == "ApprovalRequestedEvent":
            approval = data.get("approval_data")
            if isinstance(approval, dict) and isinstance(approval.get("data"), dict):
                return {**approval["data"], **{k: v for k, v in approval.items() if k != "data"}}
            if isinstance(approval, dict):
                return approval
    return None


def _status_of_last_row(rows: list[dict[str, Any]]) -> str:
    last = rows[-1]["type"] if rows else ""
    return {"ExecutionCompletedEvent": "completed", "ExecutionFailedEvent": "failed"}.get(last, "running")


def summary(execution_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One item of ``GET /api/v1/executions``: the status is read from the latest row only."""
    started = next((row for row in rows if row["type"] == "ExecutionStartedEvent"), None)
    workflow = None
    if started is not None:
        workflow = started["data"].get("blueprint_name") or started["data"].get("workflow_module")
    return {
        "execution_id": execution_id,
        "id": execution_id,
        "status": _status_of_last_row(rows),
        "current_step": current_step(rows),
        "current_step_data": current_step_data(rows),
        "workflow": workflow,
        "events_count": len(rows),
    }


def show(projection: Projection, rows: list[dict[str, Any]], *, process_alive: bool) -> dict[str, Any]:
    """``GET /api/v1/executions/{id}``.

    With a live engine process Core answers from the engine (``progress`` included); a stopped
    execution has none, so Core rebuilds it from its rows: no ``progress``, and the state is what
    the rebuild knows (running, completed or failed).
    """
    execution_id = projection.execution_id
    if not process_alive:
        return {
            "execution_id": execution_id,
            "state": _status_of_last_row(rows),
            "current_step": current_step(rows),
            "current_step_data": current_step_data(rows),
            "results": dict(projection.step_outputs),
            "error": None,
        }
    live_step = projection.current_step_name or None
    if projection.reconstruction_error is not None:
        error: str | None = f"Failed to reconstruct state: {projection.reconstruction_error}"
    elif projection.error is not None:
        error = error_text(projection.error[0], projection.error[1], live_step)
    else:
        error = None
    return {
        "execution_id": execution_id,
        "state": _STATE_WORDS[projection.phase],
        "progress": f"{projection.current_index}/{len(projection.steps)}",
        # Core falls back to the log for the step (and only then for its data) once none is current.
        "current_step": live_step if live_step is not None else current_step(rows),
        "current_step_data": None if live_step is not None else current_step_data(rows),
        "results": dict(projection.step_outputs),
        "error": error,
    }
