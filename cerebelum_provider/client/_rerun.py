"""Rerun a failed execution: a new execution of its workflow with its inputs, read from its event log.

Core (release be56c90) has no call that runs a FAILED execution again: its resume answers
"already_running" or "resumed" and nothing runs. A rerun starts the workflow again, so every step
runs again, completed ones included. The inputs come from the failed execution's
``ExecutionStartedEvent`` as Core stored them, which is not always as they were sent: Core's event
store writes ``true``/``false`` as the strings ``"true"``/``"false"``, and an execution started over
gRPC has every number as a float (protobuf's Struct). Only Core's HTTP API serves the event log.

Exactly once per failed execution: the rerun's inputs carry :data:`RERUN_OF_INPUT` naming the
execution it reruns, and before starting one the executions of the workflow are searched for it
(their start events), so a retried task, or one whose worker died after the start, finds the rerun
instead of starting another. An execution that is itself a rerun is never rerun: a workflow that
keeps failing would otherwise be started again and again by an automatic recovery.

The steps are written once, as plans: generators that yield the client's operations and receive
their answers (or their errors, thrown in); the asyncio and the blocking client each drive them.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from cerebelum_provider._arguments import check_execution_id
from cerebelum_provider.client import _operations as ops
from cerebelum_provider.exceptions import ExecutionNotFoundError, RerunRefusedError
from cerebelum_provider.models import Rerun

T = TypeVar("T")
#: A sequence of calls to Core: yields operations, receives their answers, returns the result.
Plan = Generator["ops.Operation[Any]", Any, T]

#: Input that names the execution a rerun reruns; how a later run finds the rerun again.
RERUN_OF_INPUT = "_cerebelum_rerun_of"
#: The event Core's log starts with; its data carries the workflow and the inputs.
START_EVENT = "ExecutionStartedEvent"


def start_event_inputs(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The inputs in an event log's ``ExecutionStartedEvent`` (as Core stored them); None without one."""
    for event in events:
        if event.get("type") == START_EVENT:
            data = event.get("data")
            inputs = data.get("inputs") if isinstance(data, dict) else None
            return inputs if isinstance(inputs, dict) else None
    return None


@dataclass(frozen=True)
class StartRecord:
    """What an execution was started with, per its event log."""

    workflow_name: str
    inputs: dict[str, Any]

    @classmethod
    def of(cls, events: list[dict[str, Any]], execution_id: str, core_address: str) -> StartRecord:
        """Raises RerunRefusedError when the log has no start event naming a workflow."""
        for event in events:
            if event.get("type") != START_EVENT:
                continue
            data = event.get("data")
            if not isinstance(data, dict):
                break
            workflow = data.get("blueprint_name")
            inputs = data.get("inputs")
            if isinstance(workflow, str) and workflow and isinstance(inputs, dict):
                return cls(workflow, inputs)
            break
        raise RerunRefusedError(
            f"Cerebelum execution {execution_id} cannot be rerun: its event log at {core_address} has no "
            f"{START_EVENT} with a workflow (blueprint_name) and inputs",
            core_address=core_address,
            execution_id=execution_id,
        )


def find_reruns(workflow_name: str | None) -> Plan[dict[str, str]]:
    """``{failed execution id: id of its rerun}`` for every rerun of ``workflow_name`` (None: of
    every workflow) in Core, found by each listed execution's start event (one read per execution)."""
    pager = ops.ExecutionPager(workflow_name, None)
    reruns: dict[str, str] = {}
    while (operation := pager.next_operation()) is not None:
        page = yield operation
        for execution in pager.accept(page):
            try:
                events = yield ops.get_execution_events(execution.execution_id)
            except ExecutionNotFoundError:
                continue  # listed before its first event was stored: not a rerun of anything yet
            rerun_of = (start_event_inputs(events) or {}).get(RERUN_OF_INPUT)
            if isinstance(rerun_of, str):
                reruns.setdefault(rerun_of, execution.execution_id)
    return reruns


def rerun(execution_id: str, known_reruns: Mapping[str, str] | None, core_address: str) -> Plan[Rerun]:
    """Find the rerun of ``execution_id`` or start it (see the module's docstring).

    ``known_reruns`` (``{failed id: rerun id}``, as :func:`find_reruns` builds it) spares the search
    when the caller already holds it, e.g. a bulk run over many executions of one workflow.
    """
    execution_id = check_execution_id(execution_id, field_name="execution_id")
    record = StartRecord.of((yield ops.get_execution_events(execution_id)), execution_id, core_address)
    rerun_of = record.inputs.get(RERUN_OF_INPUT)
    if rerun_of is not None:
        raise RerunRefusedError(
            f"Cerebelum execution {execution_id} is itself a rerun (of {rerun_of}) and is not rerun again: "
            f"a rerun that fails needs a person to look at workflow {record.workflow_name!r}",
            core_address=core_address,
            execution_id=execution_id,
        )
    reruns = known_reruns if known_reruns is not None else (yield from find_reruns(record.workflow_name))
    if execution_id in reruns:
        return Rerun(execution_id, reruns[execution_id], record.workflow_name, started=False)
    inputs = {**record.inputs, RERUN_OF_INPUT: execution_id}
    handle = yield ops.execute_workflow(record.workflow_name, inputs)
    return Rerun(execution_id, handle.execution_id, record.workflow_name, started=True)


def run_plan(plan: Plan[T], call: Callable[[ops.Operation[Any]], Any]) -> T:
    """Drive a plan with a blocking ``call``: each error is thrown into the plan where it was asked."""
    try:
        operation = next(plan)
        while True:
            try:
                answer = call(operation)
            except Exception as error:  # noqa: BLE001 (handed to the plan, which re-raises what it does not expect)
                operation = plan.throw(error)
            else:
                operation = plan.send(answer)
    except StopIteration as done:
        return done.value


async def run_plan_async(plan: Plan[T], call: Callable[[ops.Operation[Any]], Any]) -> T:
    """:func:`run_plan` with an awaitable ``call``."""
    try:
        operation = next(plan)
        while True:
            try:
                answer = await call(operation)
            except Exception as error:  # noqa: BLE001 (handed to the plan, which re-raises what it does not expect)
                operation = plan.throw(error)
            else:
                operation = plan.send(answer)
    except StopIteration as done:
        return done.value
