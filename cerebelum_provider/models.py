"""What Cerebelum Core reports about executions, as plain Python.

Pure data: this module imports neither grpc nor protobuf, so DAG files, operators and the
trigger's event handlers can use it at no import cost. Conversion from the wire messages lives
in ``cerebelum_provider.client._convert``; conversion to and from JSON-safe dicts (XCom, trigger
events) lives here, so that both directions of that round trip sit side by side.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


class ExecutionState(enum.Enum):
    """An execution's state; values are the wire enum's names, as in the reference SDK."""

    UNSPECIFIED = "EXECUTION_STATE_UNSPECIFIED"
    RUNNING = "EXECUTION_RUNNING"
    COMPLETED = "EXECUTION_COMPLETED"
    FAILED = "EXECUTION_FAILED"
    SLEEPING = "EXECUTION_SLEEPING"
    WAITING_FOR_APPROVAL = "EXECUTION_WAITING_FOR_APPROVAL"
    PAUSED = "EXECUTION_PAUSED"

    @property
    def is_terminal(self) -> bool:
        """True when Core will not move the execution on by itself (completed or failed)."""
        return self in (ExecutionState.COMPLETED, ExecutionState.FAILED)

    @classmethod
    def coerce(cls, value: ExecutionState | str, *, field_name: str = "status") -> ExecutionState:
        """Accept the enum, its name (``"FAILED"``) or its value (``"EXECUTION_FAILED"``).

        Raises:
            TypeError: ``value`` is neither an ``ExecutionState`` nor a string.
            ValueError: the string names no state.
        """
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise TypeError(
                f"{field_name} must be an ExecutionState or its name or value as a string, "
                f"got {type(value).__name__} {value!r}"
            )
        text = value.strip().upper()
        for state in cls:
            if text in (state.name, state.value):
                return state
        expected = ", ".join(state.name for state in cls)
        raise ValueError(f"{field_name}={value!r} is not an execution state; expected one of {expected}")


#: Most bytes of JSON that the inputs and outputs of one execution may take in an XCom value or a
#: trigger event (both land in Airflow's metadata database). Each value past it is replaced by a
#: ``CUT_MARKER`` string that says how large it was.
XCOM_VALUES_LIMIT = 64 * 1024
CUT_MARKER = "<cut by cerebelum_provider: {size} bytes of JSON; read it from Core with the client>"


class ResumeAnswer(str, enum.Enum):
    """What Core answers a resume, on both APIs (a ``str``, so it compares equal to the words)."""

    RESUMED = "resumed"  # a new engine process started from the rebuilt state
    ALREADY_RUNNING = "already_running"  # a live process exists (running, sleeping, waiting)
    FAILED_TO_RESUME = "failed_to_resume"  # unknown id, completed execution, any other refusal

    # Printed as Core's word, in messages and logs alike ("answered 'resumed'").
    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return repr(self.value)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _from_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class StepStatus:
    """One step that Core reports as done (Core tracks no per-step timings today)."""

    step_name: str
    step_index: int
    status: str
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_seconds: int = 0
    output: dict[str, Any] | None = None
    error: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (datetimes as ISO 8601 strings)."""
        return {
            "step_name": self.step_name,
            "step_index": self.step_index,
            "status": self.status,
            "started_at": _iso(self.started_at),
            "completed_at": _iso(self.completed_at),
            "duration_seconds": self.duration_seconds,
            "output": self.output,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepStatus:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            step_name=data["step_name"],
            step_index=data["step_index"],
            status=data["status"],
            started_at=_from_iso(data.get("started_at")),
            completed_at=_from_iso(data.get("completed_at")),
            duration_seconds=data.get("duration_seconds", 0),
            output=data.get("output"),
            error=data.get("error"),
        )


@dataclass(frozen=True)
class SleepInfo:
    """Why and for how long a SLEEPING execution sleeps; ``remaining_ms`` is as of the query."""

    duration_ms: int
    sleep_started_at: datetime | None
    remaining_ms: int
    data: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (datetimes as ISO 8601 strings)."""
        return {
            "duration_ms": self.duration_ms,
            "sleep_started_at": _iso(self.sleep_started_at),
            "remaining_ms": self.remaining_ms,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SleepInfo:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            duration_ms=data["duration_ms"],
            sleep_started_at=_from_iso(data.get("sleep_started_at")),
            remaining_ms=data["remaining_ms"],
            data=data.get("data"),
        )


@dataclass(frozen=True)
class ApprovalInfo:
    """What a WAITING_FOR_APPROVAL execution waits for; ``remaining_timeout_ms`` is as of the query."""

    approval_type: str
    data: dict[str, Any] | None
    timeout_ms: int
    requested_at: datetime | None
    remaining_timeout_ms: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (datetimes as ISO 8601 strings)."""
        return {
            "approval_type": self.approval_type,
            "data": self.data,
            "timeout_ms": self.timeout_ms,
            "requested_at": _iso(self.requested_at),
            "remaining_timeout_ms": self.remaining_timeout_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApprovalInfo:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            approval_type=data["approval_type"],
            data=data.get("data"),
            timeout_ms=data["timeout_ms"],
            requested_at=_from_iso(data.get("requested_at")),
            remaining_timeout_ms=data["remaining_timeout_ms"],
        )


@dataclass(frozen=True)
class ExecutionStatus:
    """An execution as Core rebuilt it at query time.

    Datetimes are timezone-aware UTC. ``progress_percentage`` is
    ``current_step_index / total_steps * 100`` (0.0 when Core reports no steps) and
    ``elapsed_seconds`` runs from ``started_at`` to ``completed_at``, or to the moment the status
    was converted while the execution is still going.
    """

    execution_id: str
    workflow_name: str
    status: ExecutionState
    started_at: datetime | None
    completed_at: datetime | None
    current_step_index: int
    total_steps: int
    current_step_name: str
    progress_percentage: float
    completed_steps: list[StepStatus] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)
    step_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: dict[str, str] | None = None
    sleep_info: SleepInfo | None = None
    approval_info: ApprovalInfo | None = None
    elapsed_seconds: int | None = None
    #: How many events Core's log holds for it: only Core's REST list reports it (None elsewhere).
    #: It grows with every step, resume and failure, so a second failure is told from the first.
    events_count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict for XCom and trigger events; the state is its wire name."""
        return {
            "execution_id": self.execution_id,
            "workflow_name": self.workflow_name,
            "status": self.status.value,
            "started_at": _iso(self.started_at),
            "completed_at": _iso(self.completed_at),
            "current_step_index": self.current_step_index,
            "total_steps": self.total_steps,
            "current_step_name": self.current_step_name,
            "progress_percentage": self.progress_percentage,
            "completed_steps": [step.to_dict() for step in self.completed_steps],
            "inputs": self.inputs,
            "step_outputs": self.step_outputs,
            "error": self.error,
            "sleep_info": self.sleep_info.to_dict() if self.sleep_info else None,
            "approval_info": self.approval_info.to_dict() if self.approval_info else None,
            "elapsed_seconds": self.elapsed_seconds,
            "events_count": self.events_count,
        }

    def to_xcom(self, *, include_outputs: bool = False, limit: int = XCOM_VALUES_LIMIT) -> dict[str, Any]:
        """:meth:`to_dict` for Airflow's metadata database (XCom values, trigger events).

        Step outputs are left out unless ``include_outputs``, and then kept once, in
        ``step_outputs`` (each completed step's ``output``, the same values again, is always
        None). The inputs and the outputs kept share a budget of ``limit`` bytes of JSON, in that
        order; each value that does not fit is replaced by a ``CUT_MARKER`` string, so one large
        output never becomes a multi-MB row.
        """
        data = self.to_dict()
        budget = _Budget(limit)
        data["inputs"] = {key: budget.take(value) for key, value in data["inputs"].items()}
        outputs = data["step_outputs"] if include_outputs else {}
        data["step_outputs"] = {name: budget.take(value) for name, value in outputs.items()}
        for step in data["completed_steps"]:
            step["output"] = None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutionStatus:
        """Rebuild from :meth:`to_dict` output (for example a trigger event's payload)."""
        return cls(
            execution_id=data["execution_id"],
            workflow_name=data["workflow_name"],
            status=ExecutionState.coerce(data["status"]),
            started_at=_from_iso(data.get("started_at")),
            completed_at=_from_iso(data.get("completed_at")),
            current_step_index=data["current_step_index"],
            total_steps=data["total_steps"],
            current_step_name=data["current_step_name"],
            progress_percentage=data["progress_percentage"],
            completed_steps=[StepStatus.from_dict(step) for step in data.get("completed_steps", [])],
            inputs=data.get("inputs") or {},
            step_outputs=data.get("step_outputs") or {},
            error=data.get("error"),
            sleep_info=SleepInfo.from_dict(data["sleep_info"]) if data.get("sleep_info") else None,
            approval_info=ApprovalInfo.from_dict(data["approval_info"])
            if data.get("approval_info")
            else None,
            elapsed_seconds=data.get("elapsed_seconds"),
            events_count=data.get("events_count"),
        )

    def failure_message(self) -> str:
        """One line for a task that fails on this execution: where it ended, with Core's error kind
        and message."""
        workflow = f" ({self.workflow_name})" if self.workflow_name else ""
        text = f"Cerebelum execution {self.execution_id}{workflow} ended in {self.status.value}"
        if self.error:
            return f"{text}: {self.error.get('kind') or 'error'}: {self.error.get('message') or ''}".rstrip()
        if self.status is ExecutionState.FAILED:
            return f"{text} (Core reported no error details)"
        return text

    def describe_progress(self) -> str:
        """One line for logs: state, percentage, step i/n and its name, remaining sleep or approval."""
        # Core's REST API does not name the workflow in a status: say nothing rather than "()".
        workflow = f" ({self.workflow_name})" if self.workflow_name else ""
        parts = [
            f"execution {self.execution_id}{workflow} is {self.status.name}",
            f"{self.progress_percentage:.0f}%",
        ]
        if self.total_steps:
            step = f"step {min(self.current_step_index + 1, self.total_steps)}/{self.total_steps}"
            if self.current_step_name:
                step += f" {self.current_step_name}"
            parts.append(step)
        if self.sleep_info is not None:
            parts.append(f"sleeping, {self.sleep_info.remaining_ms / 1000:.1f}s left")
        if self.approval_info is not None:
            parts.append(
                f"waiting for {self.approval_info.approval_type or 'approval'}, "
                f"times out in {self.approval_info.remaining_timeout_ms / 1000:.0f}s"
            )
        if self.error:
            parts.append(f"error {self.error.get('kind', '')}: {self.error.get('message', '')}")
        return ", ".join(parts)


class PollAnswer:
    """One status query's answer as a poller reads it: the state and, while the execution sleeps,
    the time left, at once; the whole :class:`ExecutionStatus` only when :meth:`status` asks.

    A trigger polls thousands of executions a second and nearly every answer only says "still
    running": converting each into a full ``ExecutionStatus`` cost more CPU than the call itself
    (bench/RESULTS.md). ``status()`` converts once and keeps the result; its ``elapsed_seconds``
    runs to the moment Core answered, as ``get_execution_status``'s does.
    """

    __slots__ = ("_convert", "_status", "sleep_remaining_ms", "state")

    def __init__(
        self,
        state: ExecutionState,
        sleep_remaining_ms: int | None,
        convert: Callable[[], ExecutionStatus],
    ) -> None:
        self.state = state
        #: Milliseconds until a sleeping execution wakes; None unless it sleeps and Core said so.
        self.sleep_remaining_ms = sleep_remaining_ms
        self._convert: Callable[[], ExecutionStatus] | None = convert
        self._status: ExecutionStatus | None = None

    @classmethod
    def of(cls, status: ExecutionStatus) -> PollAnswer:
        """The answer for a status already converted (Core's REST answer is converted whole)."""
        return cls(
            status.status, status.sleep_info.remaining_ms if status.sleep_info else None, lambda: status
        )

    def status(self) -> ExecutionStatus:
        """The whole status, as ``get_execution_status`` would have returned it."""
        if self._status is None:
            assert self._convert is not None
            self._status, self._convert = self._convert(), None
        return self._status

    def __repr__(self) -> str:
        return f"PollAnswer(state={self.state.name}, sleep_remaining_ms={self.sleep_remaining_ms})"


@dataclass(frozen=True)
class ExecutionHandle:
    """What Core answers when a workflow is started: the new execution's id and its status."""

    execution_id: str
    status: str
    started_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {"execution_id": self.execution_id, "status": self.status, "started_at": _iso(self.started_at)}


@dataclass(frozen=True)
class Rerun:
    """A new execution of a failed execution's workflow with its inputs: every step runs again.

    ``started`` is False when the rerun was found (an earlier run started it), not started now.
    """

    execution_id: str
    rerun_execution_id: str
    workflow_name: str
    started: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "execution_id": self.execution_id,
            "rerun_execution_id": self.rerun_execution_id,
            "workflow_name": self.workflow_name,
            "started": self.started,
        }


class _Budget:
    """Bytes of JSON left for values; a value that does not fit is replaced by a marker."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, value: Any) -> Any:
        size = len(json.dumps(value, default=str, allow_nan=True))
        if size <= self.left:
            self.left -= size
            return value
        return CUT_MARKER.format(size=size)
