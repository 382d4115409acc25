"""The provider in a real Airflow stack against the real Cerebelum Core (release be56c90) over HTTP.

``dag.test()`` runs a trigger in line, in the task's own process; here the scheduler hands the
deferred task to the separate ``airflow triggerer`` process, which polls the real Core until the
real SDK worker has finished the execution. Each test approves its execution (``rc_ask`` waits
for approval) only once the task is deferred and Core's log shows the triggerer's status query,
so the wait in the triggerer is certain, not a race the worker might win.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import pytest
from airflow_stack import AirflowStack, TaskStateChange
from real_core import RealCore

pytestmark = [pytest.mark.realcore, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

RELEASE = "be56c90"
TRIGGER_CLASSPATH = "cerebelum_provider.triggers.cerebelum.CerebelumExecutionTrigger"
#: Seconds the triggerer may take to poll a newly deferred task (its first connection lookup is slow).
TRIGGER_PICKUP_TIMEOUT = 90.0


@pytest.fixture(autouse=True)
def _pinned_release(real_core: RealCore) -> None:
    assert real_core.release == RELEASE, (
        f"these tests pin what Core {RELEASE} does; the release here is {real_core.release}"
    )


class ApproveWhenTriggerPolls:
    """``on_change`` for ``wait_for_run``: once ``task_id`` is deferred, wait for the triggerer's
    first status query about the execution (counted in Core's log), then approve it over REST.

    It also waits until the scheduler has received the executor's report of the task's exit into
    deferral. Airflow 3.3.2's LocalExecutor sends that report about 5 s after the task deferred; a
    trigger firing sooner resumes the task first, and a report landing while the resumed task runs
    makes the scheduler fail the task as "killed externally" (measured here: the real worker
    finishes in milliseconds). Waiting for it keeps the test about the provider.
    """

    def __init__(self, core: RealCore, stack: AirflowStack, task_id: str, find_execution_id: Any):
        self.core, self.stack, self.task_id = core, stack, task_id
        self.find_execution_id = find_execution_id
        self.execution_id: str | None = None
        self.approval_status: int | None = None

    def __call__(self, change: TaskStateChange) -> None:
        if change.task_id != self.task_id or change.state != "deferred" or self.execution_id:
            return
        self.execution_id = self.find_execution_id(change)
        reads_in_worker = self.core.status_reads(self.execution_id, "http")
        deadline = time.monotonic() + TRIGGER_PICKUP_TIMEOUT
        while self.core.status_reads(self.execution_id, "http") <= reads_in_worker:
            assert time.monotonic() < deadline, "the triggerer never polled Core for the deferred task"
            time.sleep(0.1)
        exit_reported = (
            "Received executor event with state success for task instance TaskInstanceKey("
            f"dag_id='{change.dag_id}', task_id='{change.task_id}', run_id='{change.run_id}', try_number=1"
        )
        deadline = time.monotonic() + TRIGGER_PICKUP_TIMEOUT
        while exit_reported not in self.stack.service_log("scheduler"):
            assert time.monotonic() < deadline, f"the scheduler never logged: {exit_reported}"
            time.sleep(0.2)
        assert self.core.execution(self.execution_id)["state"] == "waiting_for_approval"
        answer = self.core.http.post(f"/api/v1/executions/{self.execution_id}/approve", json={"e2e": True})
        self.approval_status = answer.status_code


def triggerer_events(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
    """The trigger's own log lines, from the one triggerer job that ran it, which must be this
    stack's running ``airflow triggerer`` process."""
    task_logs = stack.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    trigger_logs = sorted(task_logs.glob("attempt=1.log.trigger.*.log"))
    assert len(trigger_logs) == 1, trigger_logs
    job_id = int(trigger_logs[0].name.split(".")[-2])
    database = sqlite3.connect(f"file:{stack.home / 'airflow.db'}?mode=ro", uri=True)
    try:
        jobs = dict(database.execute("SELECT id, job_type || ':' || state FROM job").fetchall())
    finally:
        database.close()
    assert jobs[job_id] == "TriggererJob:running"
    assert [kind for kind in jobs.values() if kind.startswith("TriggererJob")] == ["TriggererJob:running"]
    assert stack.processes["triggerer"].alive()
    return [json.loads(line) for line in trigger_logs[0].read_text().splitlines() if line.startswith("{")]


def assert_fired_one_success(events: list[dict[str, Any]]) -> None:
    fired = [event for event in events if event["event"] == "Trigger fired event"]
    assert len(fired) == 1 and "'status': 'success'" in fired[0]["result"], fired
    assert any(event.get("logger", "").startswith(TRIGGER_CLASSPATH) for event in events)


def test_deferrable_sensor_waits_in_the_triggerer_until_the_real_worker_completes(
    realcore_airflow: AirflowStack, real_core: RealCore
) -> None:
    execution_id = real_core.start_execution("rc_ask", {"case": "e2e sensor"})
    real_core.wait_for_state(execution_id, {"waiting_for_approval"})
    realcore_airflow.wait_for_dags(["realcore_e2e_wait"])
    approver = ApproveWhenTriggerPolls(
        real_core, realcore_airflow, "wait_for_execution", lambda _: execution_id
    )

    run_id = realcore_airflow.trigger_dag("realcore_e2e_wait", conf={"execution_id": execution_id})
    result = realcore_airflow.wait_for_run("realcore_e2e_wait", run_id, timeout=200, on_change=approver)

    states = result.task_states["wait_for_execution"]
    assert result.state == "success", states
    assert "deferred" in states and states[-1] == "success", states
    assert approver.approval_status == 200
    deferred = [ti for ti in result.snapshots["wait_for_execution"] if ti["state"] == "deferred"]
    assert deferred[0]["trigger"]["classpath"] == TRIGGER_CLASSPATH
    events = triggerer_events(realcore_airflow, "realcore_e2e_wait", run_id, "wait_for_execution")
    assert_fired_one_success(events)
    final = realcore_airflow.xcom("realcore_e2e_wait", run_id, "wait_for_execution")
    assert (final["execution_id"], final["status"]) == (execution_id, "EXECUTION_COMPLETED")
    assert real_core.steps_run(execution_id) == ["ok_a", "ask", "ask", "ok_c"]


def test_execute_operator_starts_a_real_workflow_and_waits_for_it_in_the_triggerer(
    realcore_airflow: AirflowStack, real_core: RealCore
) -> None:
    realcore_airflow.wait_for_dags(["realcore_e2e_execute"])
    run_id = realcore_airflow.trigger_dag("realcore_e2e_execute", conf={"workflow_name": "rc_ask"})

    def started_execution(change: TaskStateChange) -> str:
        return realcore_airflow.xcom("realcore_e2e_execute", run_id, "execute", key="execution_id")

    approver = ApproveWhenTriggerPolls(real_core, realcore_airflow, "execute", started_execution)
    result = realcore_airflow.wait_for_run("realcore_e2e_execute", run_id, timeout=200, on_change=approver)

    states = result.task_states["execute"]
    assert result.state == "success", states
    assert "deferred" in states and states[-1] == "success", states
    assert approver.approval_status == 200
    assert_fired_one_success(triggerer_events(realcore_airflow, "realcore_e2e_execute", run_id, "execute"))
    final = realcore_airflow.xcom("realcore_e2e_execute", run_id, "execute")
    execution_id = approver.execution_id
    assert (final["execution_id"], final["status"]) == (execution_id, "EXECUTION_COMPLETED")
    assert real_core.steps_run(execution_id) == ["ok_a", "ask", "ask", "ok_c"]
    started = real_core.events(execution_id)[0]
    assert started["type"] == "ExecutionStartedEvent"
    assert started["data"]["inputs"]["source"] == "realcore-e2e"


def _approval_by_a_person(
    stack: AirflowStack, core: RealCore, answer: dict[str, Any]
) -> tuple[str, Any, list[dict[str, Any]]]:
    """An ``rc_ask`` execution waiting for approval, and a run of ``realcore_e2e_approval`` on it
    that a person answers with ``answer`` through the Required actions API; with what they saw."""
    execution_id = core.start_execution("rc_ask", {"case": "e2e approval"})
    core.wait_for_state(execution_id, {"waiting_for_approval"})
    stack.wait_for_dags(["realcore_e2e_approval"])
    run_id = stack.trigger_dag("realcore_e2e_approval", conf={"execution_id": execution_id})

    shown: list[dict[str, Any]] = []

    def answer_when_asked(change: TaskStateChange) -> None:
        if change.task_id == "approve" and change.state == "awaiting_input":
            shown.append(stack.answer_hitl("realcore_e2e_approval", change.run_id, "approve", answer))

    result = stack.wait_for_run("realcore_e2e_approval", run_id, timeout=200, on_change=answer_when_asked)
    return execution_id, result, shown


def test_a_persons_approve_hands_their_input_to_the_real_step(
    realcore_airflow: AirflowStack, real_core: RealCore
) -> None:
    execution_id, result, shown = _approval_by_a_person(
        realcore_airflow, real_core, {"chosen_options": ["Approve"], "params_input": {"note": "ship it"}}
    )

    assert result.state == "success", result.task_states
    assert "awaiting_input" in result.task_states["approve"]
    decision = realcore_airflow.xcom("realcore_e2e_approval", result.run_id, "approve")
    assert (decision["step"], decision["approval_status"]) == ("ask", "approved")
    # The person saw what the real step asked (ApprovalMarker("manual", {"amount": 5}, 600000)),
    # read from the release's ApprovalRequestedEvent.
    (request,) = shown
    assert request["subject"] == f"Approve Cerebelum execution {execution_id} at step ask?"
    assert "- Approval type: manual" in request["body"] and "Core's timeout: 600 s" in request["body"]
    assert '"amount": 5' in request["body"]
    real_core.wait_for_state(execution_id, {"completed"})
    # The real step ran again with the person's input as its inputs.
    assert real_core.execution(execution_id)["results"]["ask"] == {"approved_with": {"note": "ship it"}}
    assert real_core.steps_run(execution_id) == ["ok_a", "ask", "ask", "ok_c"]


def test_a_persons_reject_stops_the_real_execution(
    realcore_airflow: AirflowStack, real_core: RealCore
) -> None:
    execution_id, result, _ = _approval_by_a_person(realcore_airflow, real_core, {"chosen_options": ["Reject"]})

    assert result.state == "failed", result.task_states
    # Release be56c90 records no event for a stop: the execution reads "running" and never goes on.
    assert real_core.execution(execution_id)["state"] == "running"
    refused = real_core.http.post(f"/api/v1/executions/{execution_id}/approve", json={"late": True})
    assert (refused.status_code, refused.json()) == (422, {"error": ":not_found"})
    assert real_core.steps_run(execution_id) == ["ok_a", "ask"]
