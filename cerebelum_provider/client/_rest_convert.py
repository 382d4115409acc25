"""Core's REST answers (JSON) -> the same plain models the gRPC answers become.

Core's REST API says less than its gRPC API: a status has no workflow name, no timestamps and no
per-step list; a list summary has no progress. What REST does not say stays empty (``""``,
``None``, ``0``, ``[]``) rather than being guessed. Like ``_convert``, nothing here raises on odd
data: a state word this client does not know becomes ``ExecutionState.UNSPECIFIED`` (or FAILED
when Core reports an error, the order Core's own state derivation uses).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from cerebelum_provider.models import (
    ApprovalInfo,
    ExecutionHandle,
    ExecutionState,
    ExecutionStatus,
    StepStatus,
)

#: The ``status`` of a step Core ran to completion, as Core's gRPC ``StepStatus`` says it.
STEP_COMPLETED = "completed"

#: State words of Core's REST API (its engine's state names) -> model states. ``executing_step``
#: and ``initializing`` are the engine's names for a running execution.
_STATE_BY_WORD = {
    "running": ExecutionState.RUNNING,
    "executing_step": ExecutionState.RUNNING,
    "initializing": ExecutionState.RUNNING,
    "completed": ExecutionState.COMPLETED,
    "failed": ExecutionState.FAILED,
    "sleeping": ExecutionState.SLEEPING,
    "waiting_for_approval": ExecutionState.WAITING_FOR_APPROVAL,
    "paused": ExecutionState.PAUSED,
}

#: The words the list endpoint's ``status`` filter takes, by model state (measured on release
#: be56c90). A listed execution's ``status`` is derived from its last event (running, completed or
#: failed), but the filter reads each execution's state: ``running`` leaves out the executions
#: that wait for approval, as gRPC's RUNNING filter does, and ``waiting_for_approval`` finds them.
LIST_FILTER_WORDS = {
    ExecutionState.RUNNING: "running",
    ExecutionState.COMPLETED: "completed",
    ExecutionState.FAILED: "failed",
    ExecutionState.SLEEPING: "sleeping",
    ExecutionState.WAITING_FOR_APPROVAL: "waiting_for_approval",
    ExecutionState.PAUSED: "paused",
}

# Core formats an error as "<Kind> in step :<name> - <details>" (Cerebelum.Execution.ErrorInfo.format);
# REST sends only that text, so the kind is read back from its first words.
_ERROR_KIND = re.compile(
    r"^(Exception|Exit|Throw|Timeout|Diverge failed|Invalid jump|Infinite loop|Approval rejected|"
    r"Approval timeout)\b"
)
# A step that raised: "Exception in step :<name> - <type>: <message>"; the type is the error's kind,
# as gRPC's ErrorInfo would carry it.
_EXCEPTION = re.compile(r"^Exception in step :\S+ - ([^:\s][^:]*): (.*)$", re.DOTALL)
_PROGRESS = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def state_from_word(word: object, *, has_error: bool = False) -> ExecutionState:
    """The model state for one of Core's REST state words."""
    state = _STATE_BY_WORD.get(word.strip().lower()) if isinstance(word, str) else None
    if state is None:
        return ExecutionState.FAILED if has_error else ExecutionState.UNSPECIFIED
    return state


def error_from_json(error: object) -> dict[str, str] | None:
    """Core's ``error`` (text, or a map on its replay path) as ``{"kind", "message", "stacktrace"}``."""
    if error is None or error == "":
        return None
    if isinstance(error, dict):
        kind = error.get("kind")
        message = error.get("message")
        text = str(message) if message is not None else str(error)
        return {"kind": str(kind) if kind else _kind_of(text), "message": text, "stacktrace": ""}
    text = str(error)
    raised = _EXCEPTION.match(text)
    if raised is not None:
        return {"kind": raised.group(1).strip(), "message": raised.group(2), "stacktrace": ""}
    return {"kind": _kind_of(text), "message": text, "stacktrace": ""}


def _kind_of(text: str) -> str:
    match = _ERROR_KIND.match(text)
    return match.group(1).lower().replace(" ", "_") if match else "error"


def _progress(progress: object) -> tuple[int, int]:
    match = _PROGRESS.match(progress) if isinstance(progress, str) else None
    if match is None:
        return 0, 0
    return int(match.group(1)), int(match.group(2))


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def status_from_json(body: dict[str, Any], *, execution_id: str) -> ExecutionStatus:
    """An ``ExecutionStatus`` from ``GET /api/v1/executions/{id}``.

    ``progress`` ``"k/n"`` is Core's ``current_step_index/total_steps``; ``results`` become the step
    outputs; the ``error`` text becomes the error, its kind read from Core's wording.
    """
    error = error_from_json(body.get("error"))
    current_index, total_steps = _progress(body.get("progress"))
    results = _dict(body.get("results"))
    current_step = body.get("current_step")
    return ExecutionStatus(
        execution_id=str(body.get("execution_id") or execution_id),
        workflow_name="",
        status=state_from_word(body.get("state"), has_error=error is not None),
        started_at=None,
        completed_at=None,
        current_step_index=current_index,
        total_steps=total_steps,
        current_step_name=current_step if isinstance(current_step, str) else "",
        progress_percentage=current_index / total_steps * 100.0 if total_steps > 0 else 0.0,
        step_outputs={str(name): output for name, output in results.items()},
        error=error,
    )


def summary_from_json(summary: dict[str, Any]) -> ExecutionStatus:
    """An ``ExecutionStatus`` from one entry of ``GET /api/v1/executions`` (no progress there; the
    length of its event log, which only this answer gives)."""
    current_step = summary.get("current_step")
    events_count = summary.get("events_count")
    execution_id, workflow_name = id_from_json(summary)
    return ExecutionStatus(
        execution_id=execution_id,
        workflow_name=workflow_name,
        status=state_from_word(summary.get("status")),
        started_at=None,
        completed_at=None,
        current_step_index=0,
        total_steps=0,
        current_step_name=current_step if isinstance(current_step, str) else "",
        progress_percentage=0.0,
        events_count=events_count
        if isinstance(events_count, int) and not isinstance(events_count, bool)
        else None,
    )


def id_from_json(summary: dict[str, Any]) -> tuple[str, str]:
    """``(execution_id, workflow_name)`` of one entry of ``GET /api/v1/executions`` ("" where absent)."""
    workflow = summary.get("workflow")
    return (
        str(summary.get("execution_id") or summary.get("id") or ""),
        workflow if isinstance(workflow, str) else "",
    )


def handle_from_json(body: dict[str, Any]) -> ExecutionHandle:
    """An ``ExecutionHandle`` from ``POST /api/v1/executions`` (a blueprint's answer nests it in ``data``)."""
    data = _dict(body.get("data")) or body
    return ExecutionHandle(
        execution_id=str(data.get("id") or data.get("execution_id") or ""),
        status=str(data.get("status") or ""),
    )


def approval_from_events(
    events: list[dict[str, Any]], *, now: datetime | None = None
) -> tuple[str, ApprovalInfo] | None:
    """The step that last asked for approval and what it asked, from ``GET .../events``; None when
    no step asked.

    Core's REST status does not carry the request; its ``ApprovalRequestedEvent`` does (the step,
    the approval type, the data and the timeout). ``remaining_timeout_ms`` is counted to ``now``.
    """
    for event in reversed(events):
        if not isinstance(event, dict) or event.get("type") != "ApprovalRequestedEvent":
            continue
        data = _dict(event.get("data"))
        asked = data.get("approval_data")
        # A request can arrive wrapped as {"type", "data", "timeout_ms"} (what the step raised).
        wrapped = _dict(asked) if isinstance(_dict(asked).get("data"), dict) else {}
        payload = wrapped.get("data") if wrapped else asked
        timeout_ms = _int(data.get("timeout_ms"), _int(wrapped.get("timeout_ms"), 0))
        requested_at = _moment(data.get("timestamp") or event.get("timestamp"))
        remaining = timeout_ms
        if requested_at is not None:
            elapsed = (now or datetime.now(timezone.utc)) - requested_at
            remaining = max(0, timeout_ms - round(elapsed.total_seconds() * 1000))
        info = ApprovalInfo(
            approval_type=str(data.get("approval_type") or wrapped.get("type") or ""),
            data=payload if isinstance(payload, dict) else None,
            timeout_ms=timeout_ms,
            requested_at=requested_at,
            remaining_timeout_ms=remaining,
        )
        step = data.get("step_name")
        return (step if isinstance(step, str) else ""), info
    return None


def completed_steps_from_events(events: list[dict[str, Any]]) -> list[StepStatus]:
    """The steps Core ran to completion, from ``GET .../events``, in the order it ran them.

    Core's REST status gives only the completed steps' outputs (``results``, keyed by name); each
    of its ``StepExecutedEvent`` names the step, its index and its result. A step whose event
    names no index gets -1.
    """
    steps = []
    for event in events:
        if not isinstance(event, dict) or event.get("type") != "StepExecutedEvent":
            continue
        data = _dict(event.get("data"))
        name = data.get("step_name")
        if not isinstance(name, str) or not name:
            continue
        result = data.get("result")
        steps.append(
            StepStatus(
                step_name=name,
                step_index=_int(data.get("step_index"), -1),
                status=STEP_COMPLETED,
                completed_at=_moment(event.get("timestamp")),
                output=result if isinstance(result, dict) else None,
            )
        )
    return steps


def _int(value: object, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return int(value)


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
