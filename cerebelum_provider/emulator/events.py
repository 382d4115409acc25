"""The emulator's event log vocabulary and the one pure reducer that folds it into state.

Core is event-sourced: every change to an execution is an appended event, and every answer is
rebuilt by replaying them. The emulator does the same with one twist for speed: the engine keeps
the folded projection of each execution in memory and updates it with :func:`apply` as each event
is appended; on start it replays the whole log through the same function. Nothing in this
module has side effects, so a projection depends on nothing but the events.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

EXECUTION_STARTED = "execution_started"
STEP_STARTED = "step_started"
STEP_COMPLETED = "step_completed"
STEP_FAILED = "step_failed"
SLEEP_STARTED = "sleep_started"
APPROVAL_REQUESTED = "approval_requested"
APPROVAL_GRANTED = "approval_granted"
EXECUTION_COMPLETED = "execution_completed"
EXECUTION_FAILED = "execution_failed"
EXECUTION_RESUMED = "execution_resumed"
# A ResumeExecution that answered as if it resumed (or that a live process swallowed) and changed
# nothing: the real Core's resume bug. Counted in ``resumes``; nothing else moves.
RESUME_WITHOUT_EFFECT = "resume_without_effect"
# Events about the emulator itself, not about one execution (their execution_id is None).
WORKFLOW_DEFINED = "workflow_defined"
CLOCK_ADVANCED = "clock_advanced"


@dataclass(frozen=True)
class Event:
    """One entry of the log; ``seq`` orders the whole log, ``at`` is the emulator clock (epoch s)."""

    seq: int
    execution_id: str | None
    type: str
    at: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """What a scenario scripted for an execution: where it fails, sleeps or waits (step indexes)."""

    fail_at: int | None = None
    fail_times: int = 1
    error_kind: str = "step_error"
    error_message: str = "boom"
    sleep_at: int | None = None
    sleep_ms: int = 600_000
    approval_at: int | None = None
    approval_timeout_ms: int = 3_600_000

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict, stored in the ``execution_started`` event."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**data)


@dataclass(frozen=True)
class Sleep:
    duration_ms: int
    started_at: float
    data: dict[str, Any]


@dataclass(frozen=True)
class Approval:
    approval_type: str
    data: dict[str, Any]
    timeout_ms: int
    requested_at: float


class Phase(enum.Enum):
    """The derived state, named as the wire enum's values (``pb.ExecutionState.Value(phase.value)``)."""

    RUNNING = "EXECUTION_RUNNING"
    COMPLETED = "EXECUTION_COMPLETED"
    FAILED = "EXECUTION_FAILED"
    SLEEPING = "EXECUTION_SLEEPING"
    WAITING_FOR_APPROVAL = "EXECUTION_WAITING_FOR_APPROVAL"


@dataclass(frozen=True)
class Projection:
    """An execution as its events describe it. Treat every field (dicts included) as read-only."""

    execution_id: str
    workflow_name: str
    steps: tuple[str, ...]
    inputs: dict[str, Any]
    started_at: float
    plan: Plan
    current_index: int = 0
    finished: bool = False
    completed_at: float | None = None
    error: tuple[str, str] | None = None
    sleep: Sleep | None = None
    approval: Approval | None = None
    step_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: int = 0
    slept_at: frozenset[int] = frozenset()
    approved_at: frozenset[int] = frozenset()
    resumes: int = 0
    step_runs: dict[str, int] = field(default_factory=dict)
    approval_response: dict[str, Any] | None = None
    last_seq: int = 0
    reconstruction_error: str | None = None

    @property
    def phase(self) -> Phase:
        """The state, derived in Core's order: error, finished, sleeping, waiting, else running."""
        if self.reconstruction_error is not None or self.error is not None:
            return Phase.FAILED
        if self.finished:
            return Phase.COMPLETED
        if self.sleep is not None:
            return Phase.SLEEPING
        if self.approval is not None:
            return Phase.WAITING_FOR_APPROVAL
        return Phase.RUNNING

    @property
    def current_step_name(self) -> str:
        """The step at ``current_index``, or "" once every step is done."""
        return self.steps[self.current_index] if self.current_index < len(self.steps) else ""


class ReconstructionError(Exception):
    """An event that cannot follow the state before it (the log is inconsistent)."""


def apply(state: Projection | None, event: Event) -> Projection:
    """Fold one event into an execution's state and return the new state.

    A state that could not be rebuilt stays so (Core answers FAILED with
    ``reconstruction_error``); later events only bump its ``last_seq``.

    Raises:
        ReconstructionError: the event cannot follow ``state``; the caller records the message.
    """
    if state is not None and state.reconstruction_error is not None:
        return _replace(state, last_seq=event.seq)
    if event.type == EXECUTION_STARTED:
        if state is not None:
            raise ReconstructionError(f"execution {event.execution_id} started twice (event {event.seq})")
        data = event.data
        steps, inputs = data["steps"], data.get("inputs") or {}
        if not isinstance(data["workflow_name"], str) or not isinstance(inputs, dict):
            raise ReconstructionError(f"event {event.seq} starts an execution with a malformed payload")
        if not isinstance(steps, list) or not steps or not all(isinstance(step, str) for step in steps):
            raise ReconstructionError(f"event {event.seq} starts an execution with malformed steps")
        return Projection(
            execution_id=event.execution_id or "",
            workflow_name=data["workflow_name"],
            steps=tuple(steps),
            inputs=inputs,
            started_at=event.at,
            plan=Plan.from_dict(data.get("plan") or {}),
            last_seq=event.seq,
        )
    if state is None:
        raise ReconstructionError(f"event {event.seq} ({event.type}) precedes execution_started")
    handler = _HANDLERS.get(event.type)
    if handler is None:
        raise ReconstructionError(f"unknown event type {event.type!r} (event {event.seq})")
    return _replace(handler(state, event), last_seq=event.seq)


def fold(events: list[Event]) -> Projection | None:
    """Replay an execution's events from nothing; a failed replay is marked, not raised."""
    state: Projection | None = None
    for event in events:
        state = apply_or_mark(state, event)
    return state


def apply_or_mark(state: Projection | None, event: Event) -> Projection:
    """:func:`apply`, turning a :class:`ReconstructionError` into a marked state."""
    try:
        return apply(state, event)
    except (ReconstructionError, KeyError, TypeError, ValueError) as error:
        if state is None:
            state = Projection(
                execution_id=event.execution_id or "",
                workflow_name=str(event.data.get("workflow_name", "unknown")),
                steps=(),
                inputs={},
                started_at=event.at,
                plan=Plan(),
            )
        return _replace(state, reconstruction_error=str(error), last_seq=event.seq)


def _replace(state: Projection, **changes: Any) -> Projection:
    """``dataclasses.replace`` without its per-call introspection (this runs for every event)."""
    new = object.__new__(Projection)
    new.__dict__.update(state.__dict__)
    new.__dict__.update(changes)
    return new


def _step_index(state: Projection, event: Event) -> int:
    index = event.data["index"]
    if not isinstance(index, int) or not 0 <= index < len(state.steps):
        raise ReconstructionError(
            f"event {event.seq} ({event.type}) names step {index!r} of a {len(state.steps)}-step workflow"
        )
    return index


def _expect_current(state: Projection, event: Event) -> int:
    index = _step_index(state, event)
    if index != state.current_index:
        raise ReconstructionError(
            f"event {event.seq} ({event.type}) is for step {index} but the execution is at step "
            f"{state.current_index}"
        )
    return index


def _step_started(state: Projection, event: Event) -> Projection:
    _expect_current(state, event)
    return state


def _ran(state: Projection, index: int) -> dict[str, int]:
    name = state.steps[index]
    return {**state.step_runs, name: state.step_runs.get(name, 0) + 1}


def _step_completed(state: Projection, event: Event) -> Projection:
    index = _expect_current(state, event)
    outputs = {**state.step_outputs, state.steps[index]: event.data.get("output") or {}}
    return _replace(
        state,
        current_index=index + 1,
        step_outputs=outputs,
        sleep=None,
        approval=None,
        step_runs=_ran(state, index),
    )


def _step_failed(state: Projection, event: Event) -> Projection:
    index = _expect_current(state, event)
    return _replace(state, failures=state.failures + 1, step_runs=_ran(state, index))


def _sleep_started(state: Projection, event: Event) -> Projection:
    index = _expect_current(state, event)
    sleep = Sleep(
        duration_ms=event.data["duration_ms"], started_at=event.at, data=event.data.get("data") or {}
    )
    return _replace(state, sleep=sleep, slept_at=state.slept_at | {index})


def _approval_requested(state: Projection, event: Event) -> Projection:
    index = _expect_current(state, event)
    approval = Approval(
        approval_type=event.data.get("approval_type", "manual"),
        data=event.data.get("data") or {},
        timeout_ms=event.data["timeout_ms"],
        requested_at=event.at,
    )
    # Asking for approval is a run of the step; Core runs it again once approved.
    return _replace(
        state, approval=approval, approved_at=state.approved_at | {index}, step_runs=_ran(state, index)
    )


def _approval_granted(state: Projection, event: Event) -> Projection:
    _expect_current(state, event)
    if state.approval is None:
        raise ReconstructionError(f"event {event.seq} grants an approval nobody requested")
    response = event.data.get("response")
    return _replace(state, approval_response=response if isinstance(response, dict) else {})


def _execution_completed(state: Projection, event: Event) -> Projection:
    return _replace(
        state,
        finished=True,
        completed_at=event.at,
        current_index=len(state.steps),
        error=None,
        sleep=None,
        approval=None,
    )


def _execution_failed(state: Projection, event: Event) -> Projection:
    error = (str(event.data.get("kind", "")), str(event.data.get("message", "")))
    return _replace(state, error=error, sleep=None, approval=None)


def _execution_resumed(state: Projection, event: Event) -> Projection:
    if state.error is None:
        raise ReconstructionError(f"event {event.seq} resumes an execution that had not failed")
    return _replace(state, error=None, resumes=state.resumes + 1)


def _resume_without_effect(state: Projection, event: Event) -> Projection:
    return _replace(state, resumes=state.resumes + 1)


_HANDLERS = {
    STEP_STARTED: _step_started,
    STEP_COMPLETED: _step_completed,
    STEP_FAILED: _step_failed,
    SLEEP_STARTED: _sleep_started,
    APPROVAL_REQUESTED: _approval_requested,
    APPROVAL_GRANTED: _approval_granted,
    EXECUTION_COMPLETED: _execution_completed,
    EXECUTION_FAILED: _execution_failed,
    EXECUTION_RESUMED: _execution_resumed,
    RESUME_WITHOUT_EFFECT: _resume_without_effect,
}
