"""The emulated Core engine: workflows, live executions, the clock, and the queries.

Every change goes through :meth:`Engine._emit`: the events are committed to the store first and
then folded into the in-memory projections by the pure reducer in ``events``. Queries read those
projections, which are exactly what a replay of the log would give.

An execution moves one step per :meth:`Engine.advance`: the step at ``current_index`` either fails
(``fail_at``, for its first ``fail_times`` attempts), sleeps (``sleep_at``), asks for approval
(``approval_at``) or completes, and then the next step starts. A stopped execution (REST ``stop``)
no longer moves, and no event records the stop: like Core, which only ends its engine process.

Listings are in execution id text order, as Core's ``DISTINCT ON (execution_id)`` query gives them.
"""

from __future__ import annotations

import bisect
import builtins
import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from cerebelum_provider.emulator import core_view
from cerebelum_provider.emulator import events as ev
from cerebelum_provider.emulator.events import Event, Phase, Plan, Projection
from cerebelum_provider.emulator.store import EventStore

DEFAULT_TIMELINE = ("initialize", "process", "validate", "finalize")
_CLOCK_ORIGIN = "manual_clock_origin"
#: The answers a resume that has no effect can give (see :meth:`Engine.resume_outcome`).
RESUME_WITHOUT_EFFECT_ANSWERS = ("already_running", "resumed")


class Engine:
    """State of one emulated Core; every public method is thread-safe."""

    def __init__(self, store: EventStore, *, real_time: bool, accept_any_workflow: bool = True) -> None:
        self.store = store
        self.real_time = real_time
        self.accept_any_workflow = accept_any_workflow
        self._lock = threading.RLock()
        self._workflows: dict[str, tuple[str, ...]] = {}
        # What executions started over the RPCs do: {"fail_at": index or None, "fail_times": n}.
        self._workflow_plans: dict[str, dict[str, Any]] = {}
        self._projections: dict[str, Projection] = {}
        # Sorted execution ids, overall and per state, per workflow name and per (name, state), so
        # filtered pages stay cheap.
        self._ids: list[str] = []
        self._by_phase: dict[Phase, list[str]] = {phase: [] for phase in Phase}
        self._by_workflow: dict[str, list[str]] = {}
        self._by_workflow_phase: dict[tuple[str, Phase], list[str]] = {}
        # The type of the latest row Core's log would hold per execution (its listing filter reads it).
        self._core_last_type: dict[str, str | None] = {}
        # Stopped executions: kept in memory only, as Core keeps nothing of a stop but a dead process.
        self._stopped: set[str] = set()
        self._unwritten: list[Event] = []
        self._batch_depth = 0
        self._clock_offset = 0.0
        self._error_handles = itertools.count(1)
        origin = store.get_meta(_CLOCK_ORIGIN)
        if origin is None:
            origin = repr(time.time())
            store.set_meta(_CLOCK_ORIGIN, origin)
        self._clock_origin = float(origin)
        self._latest_at = 0.0
        for event in store.replay():
            self._fold(event)
        self._last_seq = store.last_seq()
        if not real_time and self._latest_at > self.now():
            # The log was written on real time past the manual clock: carry the clock forward so
            # that time never runs backwards (and every later opening computes the same "now").
            self._clock_origin = self._latest_at - self._clock_offset
            store.set_meta(_CLOCK_ORIGIN, repr(self._clock_origin))

    # The clock -------------------------------------------------------------------------------

    def now(self) -> float:
        """The emulator's time (epoch seconds): frozen unless advanced, or real time plus advances."""
        base = time.time() if self.real_time else self._clock_origin
        return base + self._clock_offset

    def advance_time(self, seconds: float) -> None:
        """Move the clock on and wake every sleep that is due."""
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise ValueError(f"seconds must be a number >= 0, got {seconds!r}")
        with self._lock:
            self._emit([(None, ev.CLOCK_ADVANCED, self.now(), {"seconds": float(seconds)})])
            self.wake_due_sleeps()

    # Workflows -------------------------------------------------------------------------------

    def define_workflow(
        self, name: str, steps: Sequence[str], *, fail_at: str | int | None = None, fail_times: int = 1
    ) -> None:
        """Declare (or redeclare) a workflow's timeline of step names.

        ``fail_at`` (a step name or index) makes every execution started over the RPCs fail at that
        step for its first ``fail_times`` attempts.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"workflow name must be a non-empty string, got {name!r}")
        if isinstance(steps, str) or not steps or not all(isinstance(s, str) and s for s in steps):
            raise ValueError(f"steps must be a non-empty list of non-empty step names, got {steps!r}")
        if len(set(steps)) != len(steps):
            raise ValueError(f"step names must be unique, got {list(steps)!r}")
        if isinstance(fail_times, bool) or not isinstance(fail_times, int) or fail_times < 1:
            raise ValueError(f"fail_times must be an int >= 1, got {fail_times!r}")
        data: dict[str, Any] = {"name": name, "steps": list(steps)}
        fail_index = _resolve_step(tuple(steps), "fail_at", fail_at)
        if fail_index is not None:
            data.update(fail_at=fail_index, fail_times=fail_times)
        with self._lock:
            self._emit([(None, ev.WORKFLOW_DEFINED, self.now(), data)])

    def defined_workflows(self) -> dict[str, tuple[str, ...]]:
        """Every defined workflow and its steps."""
        with self._lock:
            return dict(self._workflows)

    def rpc_plan(self, name: str) -> dict[str, Any]:
        """The plan of an execution that ExecuteWorkflow (gRPC or REST) starts for ``name``."""
        with self._lock:
            return dict(self._workflow_plans.get(name, {}))

    def timeline(self, name: str) -> tuple[str, ...] | None:
        """The steps of a workflow, the default timeline when any name is accepted, or None."""
        with self._lock:
            steps = self._workflows.get(name)
        if steps is None and self.accept_any_workflow:
            return DEFAULT_TIMELINE
        return steps

    def defined_timeline(self, name: str) -> tuple[str, ...] | None:
        """The steps a workflow was defined with, or None (the default timeline does not count)."""
        with self._lock:
            return self._workflows.get(name)

    def next_error_handle(self) -> str:
        """An id of the form ``error_<n>`` for a refused ExecuteWorkflow (it names no execution)."""
        return f"error_{next(self._error_handles)}"

    # Executions ------------------------------------------------------------------------------

    def start_execution(
        self,
        workflow_name: str,
        inputs: dict[str, Any] | None = None,
        *,
        plan: dict[str, Any] | None = None,
        execution_id: str | None = None,
    ) -> str:
        """Start an execution of a known workflow (or any name, when accepted); return its id.

        ``plan`` takes the keys of :class:`Plan`; ``fail_at``, ``sleep_at`` and ``approval_at`` may
        be step names or indexes.

        Raises:
            ValueError: unknown workflow, a step that the workflow does not have, a taken id.
            TypeError: inputs that are not a dict.
        """
        if not isinstance(workflow_name, str) or not workflow_name:
            raise ValueError(f"workflow_name must be a non-empty string, got {workflow_name!r}")
        if inputs is not None and not isinstance(inputs, dict):
            raise TypeError(f"inputs must be a dict, got {type(inputs).__name__} {inputs!r}")
        if execution_id is not None and (not isinstance(execution_id, str) or not execution_id):
            raise ValueError(f"execution_id must be a non-empty string or None, got {execution_id!r}")
        steps = self.timeline(workflow_name)
        if steps is None:
            raise ValueError(
                f"unknown workflow {workflow_name!r}: define it first (define_workflow, SubmitBlueprint, "
                f"a scenario) or accept any workflow"
            )
        resolved = _resolve_plan(steps, plan or {})
        with self._lock:
            if execution_id is None:
                execution_id = str(uuid.uuid4())
            elif execution_id in self._projections:
                raise ValueError(f"execution id {execution_id!r} is already taken")
            now = self.now()
            data = {
                "workflow_name": workflow_name,
                "steps": list(steps),
                "inputs": inputs or {},
                "plan": resolved.to_dict(),
            }
            self._emit(
                [
                    (execution_id, ev.EXECUTION_STARTED, now, data),
                    (execution_id, ev.STEP_STARTED, now, {"index": 0}),
                ]
            )
        return execution_id

    def advance(self, steps: int = 1, execution_id: str | None = None) -> None:
        """Move running executions (all, or one) on by up to ``steps`` steps each."""
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {steps!r}")
        # One transaction for all the moves: nobody can observe them before it commits.
        with self._lock, self.batch():
            for _ in range(steps):
                if execution_id is not None:
                    targets = [self.require(execution_id)]
                else:
                    targets = [self._projections[eid] for eid in list(self._by_phase[Phase.RUNNING])]
                moved = False
                for projection in targets:
                    if (
                        projection.phase is Phase.RUNNING
                        and projection.reconstruction_error is None
                        and projection.execution_id not in self._stopped
                    ):
                        self._emit(self._step_outcome(projection))
                        moved = True
                if not moved:
                    return

    def run_until_settled(self, execution_id: str | None = None) -> None:
        """Advance until the execution (or every one) completed, failed, sleeps or waits."""
        with self._lock:
            while True:
                if execution_id is not None:
                    projection = self.require(execution_id)
                    if projection.phase is not Phase.RUNNING or execution_id in self._stopped:
                        return
                elif not self._movable():
                    return
                self.advance(1, execution_id)

    def _movable(self) -> bool:
        running = self._by_phase[Phase.RUNNING]
        if len(running) > len(self._stopped):
            return True
        return any(
            eid not in self._stopped and self._projections[eid].reconstruction_error is None
            for eid in running
        )

    def wake_due_sleeps(self) -> int:
        """Finish the sleep of every execution whose sleep is over; return how many woke."""
        with self._lock, self.batch():
            now = self.now()
            due = [
                self._projections[eid]
                for eid in list(self._by_phase[Phase.SLEEPING])
                if eid not in self._stopped and sleep_remaining_ms(self._projections[eid], now) <= 0
            ]
            for projection in due:
                self._emit(self._complete_step(projection, projection.current_index, now))
            return len(due)

    def approve(self, execution_id: str, response: dict[str, Any] | None = None) -> None:
        """Grant the approval an execution waits for, with ``response``; it then moves to its next step.

        Raises:
            ValueError: unknown id, or the execution is not waiting for approval.
            TypeError: a response that is not a dict.
        """
        if response is not None and not isinstance(response, dict):
            raise TypeError(f"response must be a dict or None, got {type(response).__name__} {response!r}")
        with self._lock:
            projection = self.require(execution_id)
            if projection.phase is not Phase.WAITING_FOR_APPROVAL:
                raise ValueError(
                    f"execution {execution_id!r} is {projection.phase.name}, not WAITING_FOR_APPROVAL"
                )
            now = self.now()
            index = projection.current_index
            self._emit(
                [(execution_id, ev.APPROVAL_GRANTED, now, {"index": index, "response": response or {}})]
                + self._complete_step(projection, index, now)
            )

    def complete(self, execution_id: str) -> None:
        """Force an execution to COMPLETED now (remaining steps complete in one go).

        Raises:
            ValueError: unknown id.
        """
        with self._lock:
            projection = self.require(execution_id)
            if projection.phase is Phase.COMPLETED:
                return
            now = self.now()
            pending: list[tuple[str | None, str, float, dict]] = []
            if projection.error is None and projection.reconstruction_error is None:
                for index in range(projection.current_index, len(projection.steps)):
                    if index > projection.current_index:
                        pending.append((execution_id, ev.STEP_STARTED, now, {"index": index}))
                    pending.append((execution_id, ev.STEP_COMPLETED, now, _output(projection, index)))
            pending.append((execution_id, ev.EXECUTION_COMPLETED, now, {}))
            self._emit(pending)

    def resume(self, execution_id: str) -> str:
        """Core's ResumeExecution: ``"resumed"``, ``"already_running"`` or ``"failed_to_resume"``."""
        return self.resume_outcome(execution_id)[0]

    def resume_outcome(self, execution_id: str, without_effect: str | None = None) -> tuple[str, str | None]:
        """Resume an execution; return the gRPC answer and, when refused, Core's REST reason.

        The REST reasons are what Core's controller prints (``inspect`` of an atom):
        ``":already_running"`` (a live engine process), ``":not_found"`` (nothing to rebuild) and
        ``":not_resumable"`` (completed). A stopped execution has no process, so it resumes from
        where it stopped. ``without_effect`` plays the real release's bug for failed and
        completed executions: ``"already_running"`` (their process never ends, so nothing runs)
        or ``"resumed"`` (after a restart: a failed one answers "resumed" and only records its
        failure again). Either way nothing runs, and the call counts in ``resumes``.
        """
        if without_effect not in (None, *RESUME_WITHOUT_EFFECT_ANSWERS):
            raise ValueError(
                f"without_effect must be None or one of {RESUME_WITHOUT_EFFECT_ANSWERS}, "
                f"got {without_effect!r}"
            )
        with self._lock:
            projection = self._projections.get(execution_id)
            if projection is None or projection.reconstruction_error is not None:
                return "failed_to_resume", ":not_found"
            phase = projection.phase
            now = self.now()
            if execution_id in self._stopped:
                if phase is Phase.COMPLETED:
                    return "failed_to_resume", ":not_resumable"
                self._stopped.discard(execution_id)
                if phase is not Phase.FAILED:
                    self._emit([(execution_id, ev.RESUME_WITHOUT_EFFECT, now, {"answer": "resumed"})])
                    return "resumed", None
                if without_effect is not None:
                    # A new process from the log: with the bug, it starts failed, as after a restart.
                    data = {"answer": "resumed", "records_failure": True}
                    self._emit([(execution_id, ev.RESUME_WITHOUT_EFFECT, now, data)])
                    return "resumed", None
            elif phase in (Phase.RUNNING, Phase.SLEEPING, Phase.WAITING_FOR_APPROVAL):
                return "already_running", ":already_running"
            elif without_effect == "already_running":
                self._emit([(execution_id, ev.RESUME_WITHOUT_EFFECT, now, {"answer": "already_running"})])
                return "already_running", ":already_running"
            elif phase is Phase.COMPLETED:
                return "failed_to_resume", ":not_resumable"
            elif without_effect == "resumed":
                data = {"answer": "resumed", "records_failure": True}
                self._emit([(execution_id, ev.RESUME_WITHOUT_EFFECT, now, data)])
                return "resumed", None
            # Restart from the failed step: the steps before it stay completed.
            self._emit(
                [
                    (execution_id, ev.EXECUTION_RESUMED, now, {}),
                    (execution_id, ev.STEP_STARTED, now, {"index": projection.current_index}),
                ]
            )
            return "resumed", None

    def stop(self, execution_id: str) -> bool:
        """End the execution's engine process (REST ``stop``): it no longer moves, its state stays.

        Returns False for an unknown id or one stopped already (Core finds no process: 404).
        """
        with self._lock:
            if execution_id not in self._projections or execution_id in self._stopped:
                return False
            self._stopped.add(execution_id)
            return True

    def is_stopped(self, execution_id: str) -> bool:
        """Whether the execution was stopped and not resumed since."""
        with self._lock:
            return execution_id in self._stopped

    def append_raw_event(self, execution_id: str, event_type: str, data: dict[str, Any]) -> None:
        """Append an event as is, bypassing the engine's rules (to make a log Core cannot replay)."""
        with self._lock:
            self._emit([(execution_id, event_type, self.now(), data)])

    # Queries ---------------------------------------------------------------------------------

    def get(self, execution_id: str) -> Projection | None:
        """The execution's state, or None for an unknown id."""
        with self._lock:
            return self._projections.get(execution_id)

    def require(self, execution_id: str) -> Projection:
        """The execution's state. Raises ValueError for an unknown id."""
        projection = self._projections.get(execution_id)
        if projection is None:
            raise ValueError(f"no execution with id {execution_id!r}")
        return projection

    def replay_execution(self, execution_id: str) -> Projection | None:
        """Rebuild one execution from the stored log, bypassing the in-memory projection."""
        return ev.fold(self.store.events_of(execution_id))

    def list(
        self, workflow_name: str | None, phase: Phase | None, limit: int, offset: int
    ) -> tuple[builtins.list[Projection], int]:
        """A page of executions in execution id text order, and the count of all matches."""
        with self._lock:
            if workflow_name is None:
                index = self._ids if phase is None else self._by_phase[phase]
            elif phase is None:
                index = self._by_workflow.get(workflow_name, [])
            else:
                index = self._by_workflow_phase.get((workflow_name, phase), [])
            return [self._projections[eid] for eid in index[offset : offset + limit]], len(index)

    def core_list(self, workflow_name: str | None, status_word: str | None) -> builtins.list[str]:
        """Every id Core's REST listing matches, in id order: the status word is matched against
        each execution's latest row (``core_view.matches_status``), any other word matches none."""
        with self._lock:
            index = self._ids if workflow_name is None else self._by_workflow.get(workflow_name, [])
            if status_word is None:
                return list(index)
            last = self._core_last_type
            return [eid for eid in index if core_view.matches_status(last.get(eid), status_word)]

    def events_of(self, execution_id: str) -> builtins.list[Event]:
        """The execution's events in log order, as stored."""
        with self._lock:
            return self.store.events_of(execution_id)

    def execution_ids(self, phase: Phase | None = None) -> builtins.list[str]:
        """Ids in the order they started (or, with a phase, of executions in that state)."""
        with self._lock:
            if phase is None:
                return list(self._projections)
            return [eid for eid, p in self._projections.items() if p.phase is phase]

    # Internals -------------------------------------------------------------------------------

    def _step_outcome(self, projection: Projection) -> builtins.list[tuple[str | None, str, float, dict]]:
        execution_id = projection.execution_id
        index = projection.current_index
        plan = projection.plan
        now = self.now()
        name = projection.steps[index]
        if index == plan.fail_at and projection.failures < plan.fail_times:
            error = {"kind": plan.error_kind, "message": plan.error_message}
            return [
                (execution_id, ev.STEP_FAILED, now, {"index": index, **error}),
                (execution_id, ev.EXECUTION_FAILED, now, error),
            ]
        if index == plan.sleep_at and index not in projection.slept_at:
            data = {"duration_ms": plan.sleep_ms, "data": {"step": name}, "index": index}
            return [(execution_id, ev.SLEEP_STARTED, now, data)]
        if index == plan.approval_at and index not in projection.approved_at:
            data = {
                "index": index,
                "approval_type": "manual",
                "data": {"step": name},
                "timeout_ms": plan.approval_timeout_ms,
            }
            return [(execution_id, ev.APPROVAL_REQUESTED, now, data)]
        return self._complete_step(projection, index, now)

    def _complete_step(
        self, projection: Projection, index: int, now: float
    ) -> builtins.list[tuple[str | None, str, float, dict]]:
        execution_id = projection.execution_id
        pending: builtins.list[tuple[str | None, str, float, dict]] = [
            (execution_id, ev.STEP_COMPLETED, now, _output(projection, index))
        ]
        if index + 1 >= len(projection.steps):
            pending.append((execution_id, ev.EXECUTION_COMPLETED, now, {}))
        else:
            pending.append((execution_id, ev.STEP_STARTED, now, {"index": index + 1}))
        return pending

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Write the events of everything done inside in one transaction at the end (for seeding).

        Nothing done inside is acknowledged to a client before the block ends, so nothing
        acknowledged can be lost; outside a batch every change is committed before it returns.
        """
        with self._lock:
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
                if self._batch_depth == 0 and self._unwritten:
                    unwritten, self._unwritten = self._unwritten, []
                    self.store.append(unwritten)

    def _emit(self, pending: builtins.list[tuple[str | None, str, float, dict]]) -> None:
        events = []
        for execution_id, event_type, at, data in pending:
            self._last_seq += 1
            events.append(Event(self._last_seq, execution_id, event_type, at, data))
        if self._batch_depth:
            self._unwritten.extend(events)
        else:
            self.store.append(events)
        for event in events:
            self._fold(event)

    def _fold(self, event: Event) -> None:
        self._latest_at = max(self._latest_at, event.at)
        if event.execution_id is None:
            if event.type == ev.WORKFLOW_DEFINED:
                self._workflows[event.data["name"]] = tuple(event.data["steps"])
                plan: dict[str, Any] = {
                    key: event.data[key] for key in ("fail_at", "fail_times") if key in event.data
                }
                self._workflow_plans[event.data["name"]] = plan
            elif event.type == ev.CLOCK_ADVANCED:
                self._clock_offset += event.data["seconds"]
            return
        execution_id = event.execution_id
        before = self._projections.get(execution_id)
        after = ev.apply_or_mark(before, event)
        self._projections[execution_id] = after
        core_type = core_view.core_type(event)
        if core_type is not None or before is None:
            self._core_last_type[execution_id] = core_type
        workflow = after.workflow_name
        if before is None:
            _insert(self._ids, execution_id)
            _insert(self._by_workflow.setdefault(workflow, []), execution_id)
        elif before.phase is after.phase and before.workflow_name == workflow:
            return
        else:
            _remove(self._by_phase[before.phase], execution_id)
            _remove(self._by_workflow_phase[(before.workflow_name, before.phase)], execution_id)
        _insert(self._by_phase[after.phase], execution_id)
        _insert(self._by_workflow_phase.setdefault((workflow, after.phase), []), execution_id)


def _insert(index: list[str], execution_id: str) -> None:
    position = bisect.bisect_left(index, execution_id)
    if position == len(index) or index[position] != execution_id:
        index.insert(position, execution_id)


def _remove(index: list[str], execution_id: str) -> None:
    position = bisect.bisect_left(index, execution_id)
    if position < len(index) and index[position] == execution_id:
        del index[position]


def _output(projection: Projection, index: int) -> dict[str, Any]:
    return {"index": index, "output": {"step": projection.steps[index], "ok": True}}


def sleep_remaining_ms(projection: Projection, now: float) -> int:
    """Milliseconds left of the execution's sleep at ``now`` (0 when not sleeping or overdue)."""
    sleep = projection.sleep
    if sleep is None:
        return 0
    return max(0, sleep.duration_ms - round((now - sleep.started_at) * 1000))


def approval_remaining_ms(projection: Projection, now: float) -> int:
    """Milliseconds left before the approval request times out at ``now``."""
    approval = projection.approval
    if approval is None:
        return 0
    return max(0, approval.timeout_ms - round((now - approval.requested_at) * 1000))


def _resolve_plan(steps: tuple[str, ...], plan: dict[str, Any]) -> Plan:
    unknown = set(plan) - set(Plan.__dataclass_fields__)
    if unknown:
        raise ValueError(
            f"unknown scenario keys {sorted(unknown)}; expected {sorted(Plan.__dataclass_fields__)}"
        )
    resolved = dict(plan)
    for key in ("fail_at", "sleep_at", "approval_at"):
        resolved[key] = _resolve_step(steps, key, plan.get(key))
    for key in ("fail_times", "sleep_ms", "approval_timeout_ms"):
        value = resolved.get(key, getattr(Plan, key))
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{key} must be an int >= 0, got {value!r}")
    for key in ("error_kind", "error_message"):
        value = resolved.get(key, getattr(Plan, key))
        if not isinstance(value, str):
            raise TypeError(f"{key} must be a string, got {type(value).__name__} {value!r}")
    return Plan(**resolved)


def _resolve_step(steps: tuple[str, ...], key: str, value: str | int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"{key} must be a step name or index, got {type(value).__name__} {value!r}")
    if isinstance(value, int):
        if not 0 <= value < len(steps):
            raise ValueError(f"{key}={value} is out of range for the {len(steps)} steps {list(steps)}")
        return value
    if value not in steps:
        raise ValueError(f"{key}={value!r} is not a step of this workflow; steps are {list(steps)}")
    return steps.index(value)
