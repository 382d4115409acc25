"""The Airflow provider against the real Cerebelum Core, release be56c90, with real Airflow code.

Sensor, trigger and operators run through ``dag.test()`` (task runner, in-process execution API,
SQLite metadata database; a deferred task's trigger runs in line) on the DAGs in
``dags/realcore_provider_dags.py``, or, for the trigger alone, through ``run()`` as the triggerer
calls it. Two connections reach the one shared Core: ``api=http`` (Core's REST API, which answers
every call the provider makes) and gRPC (whose status query crashes on every existing execution in
this release). Core's own log counts the status queries it received (``RealCore.status_reads``),
and the SDK worker's log shows which steps ran.

Each Core bug the provider copes with is pinned with the provider's answer to it:

- gRPC status crash: the sensor fails at once naming the HTTP API, the trigger yields one "error"
  event with that message, and Core received exactly one status query (nothing retried it);
- resume of a FAILED execution: Core answers "already_running" and runs nothing; the resume
  operator fails saying "still FAILED" without Airflow's retries, the bulk resume lists it under
  ``not_resumed``;
- resume of a COMPLETED execution: Core answers "already_running" too; the resume operator
  succeeds with the verdict "already_completed" (nothing was resumed);
- resume of an unknown id: Core refuses; the task fails without Airflow's retries;
- stop: Core answers "stopped" and keeps the state "running" forever;
- approval of an execution that waits for none: Core would start a ghost execution; the provider
  refuses before sending anything.

Every test uses executions (and, where it counts them, a workflow) of its own on the shared stack.
"""

from __future__ import annotations

import ast
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from real_core import RealCore

from tests.airflow_env import add_dag_bundles, configure_airflow_home, migrate_airflow_db
from tests.dagrun import output_of, run_realcore_dag

DAGS = Path(__file__).parent / "dags"
# Airflow reads its home when first imported: before anything below imports it.
configure_airflow_home()
add_dag_bundles(("realcore-provider", DAGS))

from cerebelum_provider.operators.cerebelum import CerebelumExecuteWorkflowOperator  # noqa: E402
from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger  # noqa: E402
from tests.realcore.dags import realcore_provider_dags as dags  # noqa: E402

pytestmark = [pytest.mark.realcore, pytest.mark.timeout(120)]

#: The Core release whose behaviour these tests pin.
RELEASE = "be56c90"
BOOM_ERROR = "RuntimeError: kaboom from python step"
#: What every gRPC status failure must tell the user: the API that works, and how to pick it.
HTTP_API_HINT = "api=http in the Airflow connection"
#: Seconds for the idle worker (it polls Core every 2 s at most) to have run any step Core queued.
QUIET_PERIOD = 1.5

# Workflows of this module: the counting tests see only their own executions.
ASK_THEN_OK = "rc_prov_ask_ok"
ASK_THEN_BOOM = "rc_prov_ask_boom"
FAILING = "rc_prov_fail"
BULK = "rc_prov_bulk"
APPROVED_LATE = "rc_prov_approve_done"
COMPLETING = "rc_prov_done"
BLUEPRINTS = {
    COMPLETING: ("ok_a",),
    ASK_THEN_OK: ("ok_a", "ask", "ok_c"),
    ASK_THEN_BOOM: ("ok_a", "ask", "boom"),
    FAILING: ("ok_a", "boom"),
    BULK: ("ok_a", "boom"),
    APPROVED_LATE: ("ok_a", "ok_b"),
}


@pytest.fixture(scope="module")
def core(real_core: RealCore) -> Iterator[RealCore]:
    """The shared real Core, checked to be the pinned release, with this module's blueprints and
    both connections (``AIRFLOW_CONN_*``) pointing at it."""
    assert real_core.release == RELEASE, (
        f"these tests pin what Core {RELEASE} does; the release here is {real_core.release}"
    )
    for workflow, steps in BLUEPRINTS.items():
        real_core.add_blueprint(workflow, steps)
    real_core.set_boom_failing(True)
    uris = {conn_id: real_core.airflow_connection_uri(api) for api, conn_id in dags.CONN_IDS.items()}
    names = {conn_id: f"AIRFLOW_CONN_{conn_id.upper()}" for conn_id in uris}
    for conn_id, uri in uris.items():
        os.environ[names[conn_id]] = uri
    try:
        yield real_core
    finally:
        for name in names.values():
            os.environ.pop(name, None)


@pytest.fixture(scope="module")
def airflow_db() -> None:
    """A migrated Airflow metadata database (SQLite in the shared AIRFLOW_HOME)."""
    migrate_airflow_db()


@pytest.fixture
def airflow(core: RealCore, airflow_db: None) -> RealCore:
    """The real Core, for a test that runs DAGs."""
    return core


def waiting_for_approval(core: RealCore, workflow: str) -> str:
    """Start ``workflow`` (its ``ask`` step asks once) and return its id once it waits."""
    execution_id = core.start_execution(workflow, {"case": str(uuid.uuid4())})
    core.wait_for_state(execution_id, {"waiting_for_approval"})
    return execution_id


def settled(core: RealCore, workflow: str, state: str) -> str:
    execution_id = core.start_execution(workflow, {"case": str(uuid.uuid4())})
    core.wait_for_state(execution_id, {state})
    return execution_id


class ApproveAfterReads:
    """Approve an execution over REST once Core has answered ``reads`` more status queries about it.

    Counting Core's own log makes the order certain: with ``reads=2`` a deferrable task has checked
    once in the worker and its trigger has polled once, so it surely deferred before the approval.
    """

    def __init__(self, core: RealCore, execution_id: str, api: str, reads: int, response: dict[str, Any]):
        self.core, self.execution_id, self.api, self.response = core, execution_id, api, response
        self.target = core.status_reads(execution_id, api) + reads
        self.answer: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._approve, daemon=True)

    def _approve(self) -> None:
        while not self._stop.wait(0.05):
            if self.core.status_reads(self.execution_id, self.api) >= self.target:
                path = f"/api/v1/executions/{self.execution_id}/approve"
                self.answer = self.core.http.post(path, json=self.response).status_code
                return

    def __enter__(self) -> ApproveAfterReads:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)


def grpc_status_reads(core: RealCore, execution_id: str) -> int:
    """Core's count of gRPC status queries about ``execution_id``, once its log shows the first."""
    deadline = time.monotonic() + 5
    while (reads := core.status_reads(execution_id, "grpc")) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return reads


def step_results_logged(core: RealCore) -> list[Any]:
    """Every step result the SDK worker logged ("Step completed normally: {...}"), as Python values."""
    marker = "Step completed normally: "
    lines = core.worker_log().splitlines()
    return [ast.literal_eval(line.split(marker, 1)[1]) for line in lines if marker in line]


def deferred(text: str) -> bool:
    """Whether the last dag.test() ran a trigger (its task deferred)."""
    return "running trigger in line" in text


# The sensor over HTTP ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", dags.SENSOR_MODES)
@pytest.mark.parametrize(("workflow", "outcome"), [(ASK_THEN_OK, "completed"), (ASK_THEN_BOOM, "failed")])
def test_sensor_over_http_follows_a_real_execution_to_its_end(
    airflow: RealCore, mode: str, workflow: str, outcome: str, capfd, caplog
) -> None:
    execution_id = waiting_for_approval(airflow, workflow)
    # the sensor's first read sees it waiting; in deferrable mode the trigger's first poll too
    with caplog.at_level(logging.INFO), ApproveAfterReads(
        airflow, execution_id, "http", 2 if mode == "deferrable" else 1, {"go": True}
    ) as approver:
        _, results = run_realcore_dag(dags.sensor_dag_id("http", mode), {"execution_id": execution_id})
    said = output_of(capfd, caplog)
    assert approver.answer == 200
    state, xcoms, _ = results["wait"]
    assert deferred(said) is (mode == "deferrable")
    assert airflow.execution(execution_id)["state"] == outcome
    if outcome == "completed":
        assert state == "success", said[-3000:]
        assert xcoms["return_value"]["status"] == "EXECUTION_COMPLETED"
        assert xcoms["return_value"]["execution_id"] == xcoms["execution_id"] == execution_id
        assert airflow.steps_run(execution_id) == ["ok_a", "ask", "ask", "ok_c"]
    else:
        assert state == "failed"
        assert "AirflowFailException" in said
        assert f"Cerebelum execution {execution_id}" in said and f"EXECUTION_FAILED: {BOOM_ERROR}" in said
        assert "return_value" not in xcoms


# The execute and approve operators over HTTP ----------------------------------------------------


def test_execute_operator_starts_a_real_workflow_and_waits_for_it(airflow: RealCore, capfd, caplog) -> None:
    order = str(uuid.uuid4())
    with caplog.at_level(logging.INFO):
        conf = {"workflow_name": "rc_ok", "inputs": {"order": order}}
        _, results = run_realcore_dag("realcore_execute_deferrable", conf)
    said = output_of(capfd, caplog)
    state, xcoms, _ = results["execute"]
    assert state == "success", said[-3000:]
    execution = xcoms["return_value"]
    execution_id = xcoms["execution_id"]
    assert execution["execution_id"] == execution_id
    assert execution["status"] == "EXECUTION_COMPLETED"
    assert (execution["current_step_index"], execution["total_steps"]) == (3, 3)
    assert airflow.steps_run(execution_id) == ["ok_a", "ok_b", "ok_c"]
    started = airflow.wait_for_event(execution_id, "ExecutionCompletedEvent")[0]
    assert started["type"] == "ExecutionStartedEvent"
    assert started["data"]["inputs"]["order"] == order
    # the task-instance identity rides in the inputs, for a retry to find its execution again
    identity = started["data"]["inputs"]["_airflow_correlation_id"]
    assert identity.startswith("airflow:realcore_execute_deferrable:")


class _TaskInstanceStandIn:
    """The few task-instance fields the execute operator reads, for calling execute() directly."""

    dag_id, run_id, task_id, map_index, try_number = "realcore_kill", "manual__kill", "execute", -1, 1

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def test_execute_operator_on_kill_stops_its_execution_but_core_keeps_it_running(
    airflow: RealCore, capfd, caplog
) -> None:
    from airflow.sdk.exceptions import AirflowException

    operator = CerebelumExecuteWorkflowOperator(
        task_id="execute", workflow_name="rc_ask", cerebelum_conn_id=dags.HTTP_CONN_ID,
        deferrable=False, poll_interval=0.2, timeout=3.0,
    )
    ti = _TaskInstanceStandIn()
    outcome: dict[str, BaseException] = {}

    def run_task() -> None:
        try:
            operator.execute({"ti": ti})
        except BaseException as error:  # the outcome is the assertion below
            outcome["error"] = error

    task = threading.Thread(target=run_task, daemon=True)
    with caplog.at_level(logging.INFO):
        task.start()
        deadline = time.monotonic() + 10
        while "execution_id" not in ti.xcoms or airflow.execution(ti.xcoms["execution_id"])["state"] != (
            "waiting_for_approval"
        ):
            assert time.monotonic() < deadline and task.is_alive(), (ti.xcoms, outcome)
            time.sleep(0.05)
        execution_id = ti.xcoms["execution_id"]
        # Airflow calls on_kill from the task process while execute() still waits
        operator.on_kill()
        task.join(15)
    said = output_of(capfd, caplog)
    assert f"Stopped Cerebelum execution {execution_id}, which this task started" in said
    assert f"POST /api/v1/executions/{execution_id}/stop" in airflow.core_log()
    # Core ended the execution's process but records no stop: the state reads "running" forever,
    # so the operator still waiting after the kill only ends at its own timeout
    assert isinstance(outcome.get("error"), AirflowException)
    assert "did not finish within 3s; it is still RUNNING" in str(outcome["error"])
    time.sleep(QUIET_PERIOD)
    assert airflow.execution(execution_id)["state"] == "running"
    assert airflow.steps_run(execution_id) == ["ok_a", "ask"]
    events = [event["type"] for event in airflow.events(execution_id)]
    assert not [kind for kind in events if "Stop" in kind or "Cancel" in kind], events


def test_approve_operator_hands_its_response_to_the_waiting_step(airflow: RealCore, capfd, caplog) -> None:
    execution_id = waiting_for_approval(airflow, ASK_THEN_OK)
    response = {"ticket": str(uuid.uuid4()), "approved": True}

    with caplog.at_level(logging.INFO):
        _, results = run_realcore_dag("realcore_approve", {"execution_id": execution_id, "response": response})
    said = output_of(capfd, caplog)
    state, xcoms, _ = results["approve"]
    assert state == "success", said[-3000:]
    result = xcoms["return_value"]
    assert (result["execution_id"], result["approval_status"]) == (execution_id, "approved")
    assert result["execution"]["status"] == "EXECUTION_COMPLETED"
    # Core ran the asking step again with the response as its inputs, then the last step
    assert airflow.steps_run(execution_id) == ["ok_a", "ask", "ask", "ok_c"]
    assert airflow.execution(execution_id)["results"]["ask"] == {"approved_with": response}
    assert {"approved_with": response} in step_results_logged(airflow)


def test_approving_a_completed_execution_is_refused_before_anything_is_sent(
    airflow: RealCore, capfd, caplog
) -> None:
    execution_id = settled(airflow, APPROVED_LATE, "completed")
    airflow.wait_for_event(execution_id, "ExecutionCompletedEvent")
    before = airflow.executions_total(APPROVED_LATE)

    _, results = run_realcore_dag("realcore_approve", {"execution_id": execution_id, "response": {"late": True}})

    said = output_of(capfd, caplog)
    assert results["approve"][0] == "failed"
    refusal = f"Cerebelum execution {execution_id} is COMPLETED, not waiting for approval; nothing was sent"
    assert refusal in said
    assert f"/api/v1/executions/{execution_id}/approve" not in airflow.core_log()
    # Core answers such an approval by running the whole workflow again as a new execution
    time.sleep(QUIET_PERIOD)
    assert airflow.executions_total(APPROVED_LATE) == before
    assert airflow.steps_run(execution_id) == ["ok_a", "ok_b"]


# Core's gRPC status crash: the provider's answer ------------------------------------------------


@pytest.mark.parametrize("mode", dags.SENSOR_MODES)
def test_sensor_over_grpc_fails_at_once_naming_the_http_api(
    airflow: RealCore, mode: str, capfd, caplog
) -> None:
    execution_id = settled(airflow, "rc_ok", "completed")

    _, results = run_realcore_dag(dags.sensor_dag_id("grpc", mode), {"execution_id": execution_id})

    said = output_of(capfd, caplog)
    assert results["wait"][0] == "failed"
    assert "CoreInternalError" in said
    assert f"GetExecutionStatus for execution {execution_id!r}" in said and HTTP_API_HINT in said
    # one query, no retry, no deferral, and the crash ended the task, not the sensor's timeout:
    # a crash is not an outage to wait out
    assert grpc_status_reads(airflow, execution_id) == 1
    assert not deferred(said)
    assert "AirflowSensorTimeout" not in said


async def _trigger_events(execution_id: str, conn_id: str) -> list[dict[str, Any]]:
    """Run the trigger as the triggerer does (rebuilt from serialize()); every event payload."""
    classpath, kwargs = CerebelumExecutionTrigger(
        execution_id, cerebelum_conn_id=conn_id, poll_interval=0.2, end_time=time.time() + dags.TASK_TIMEOUT
    ).serialize()
    trigger = CerebelumExecutionTrigger(**kwargs)
    return [event.payload async for event in trigger.run()]


async def test_trigger_over_grpc_yields_one_error_event_after_one_query(core: RealCore) -> None:
    execution_id = settled(core, "rc_ok", "completed")

    events = await _trigger_events(execution_id, dags.GRPC_CONN_ID)

    assert len(events) == 1, events
    event = events[0]
    assert (event["status"], event["error_type"], event["state"]) == ("error", "CoreInternalError", None)
    assert event["core_address"] == core.grpc_target
    assert "Internal Server Error" in event["message"] and HTTP_API_HINT in event["message"]
    assert grpc_status_reads(core, execution_id) == 1


async def test_trigger_over_http_yields_success_once_the_execution_completes(core: RealCore) -> None:
    execution_id = waiting_for_approval(core, ASK_THEN_OK)

    with ApproveAfterReads(core, execution_id, "http", 2, {"via": "trigger"}):
        events = await _trigger_events(execution_id, dags.HTTP_CONN_ID)

    assert [event["status"] for event in events] == ["success"]
    assert events[0]["execution"]["status"] == "EXECUTION_COMPLETED"
    assert events[0]["core_address"] == core.http_url


# Core's resume that runs nothing: the provider's answer -----------------------------------------


def test_resume_of_a_failed_execution_fails_the_task_saying_still_failed(
    airflow: RealCore, capfd, caplog
) -> None:
    execution_id = settled(airflow, FAILING, "failed")

    _, results = run_realcore_dag("realcore_resume", {"execution_id": execution_id})

    said = output_of(capfd, caplog)
    assert results["resume"][0] == "failed"
    assert results["resume"].try_number == 1  # retries=1, unused: the same resume gets the same answer
    assert f"answered 'already_running' for execution {execution_id} but it is still FAILED" in said
    assert BOOM_ERROR in said
    time.sleep(QUIET_PERIOD)
    assert airflow.steps_run(execution_id) == ["ok_a", "boom"]
    assert airflow.execution(execution_id)["state"] == "failed"


def test_resume_of_a_completed_execution_succeeds_saying_already_completed(
    airflow: RealCore, capfd, caplog
) -> None:
    execution_id = settled(airflow, COMPLETING, "completed")

    _, results = run_realcore_dag("realcore_resume", {"execution_id": execution_id})

    said = output_of(capfd, caplog)
    state, xcoms, _ = results["resume"]
    assert state == "success", said[-3000:]
    assert xcoms["return_value"]["resume_status"] == "already_completed"
    assert xcoms["return_value"]["execution"]["status"] == "EXECUTION_COMPLETED"
    assert f"Cerebelum execution {execution_id} was already COMPLETED: nothing was resumed" in said
    assert "Core answered 'already_running'" in said  # what this release answers for it
    time.sleep(QUIET_PERIOD)
    assert airflow.steps_run(execution_id) == ["ok_a"]


def test_resume_of_an_unknown_execution_fails_without_airflow_retries(airflow: RealCore, capfd, caplog) -> None:
    unknown = str(uuid.uuid4())

    _, results = run_realcore_dag("realcore_resume", {"execution_id": unknown})

    said = output_of(capfd, caplog)
    assert results["resume"][0] == "failed"
    assert results["resume"].try_number == 1
    assert f"refused to resume execution {unknown}" in said


@pytest.mark.parametrize("fail_on_error", [True, False])
def test_bulk_resume_lists_failed_executions_core_did_not_resume_as_not_resumed(
    airflow: RealCore, fail_on_error: bool, capfd, caplog
) -> None:
    workflow = f"{BULK}_{str(fail_on_error).lower()}"
    airflow.add_blueprint(workflow, BLUEPRINTS[BULK])
    failed = sorted(settled(airflow, workflow, "failed") for _ in range(2))
    for execution_id in failed:
        airflow.wait_for_event(execution_id, "ExecutionFailedEvent")

    _, results = run_realcore_dag(
        f"realcore_bulk_resume_fail_on_error_{str(fail_on_error).lower()}", {"workflow_name": workflow}
    )

    said = output_of(capfd, caplog)
    state, xcoms, _ = results["bulk_resume"]
    summary = xcoms["summary" if fail_on_error else "return_value"]
    assert state == ("failed" if fail_on_error else "success"), said[-3000:]
    assert summary["matched"] == 2
    assert sorted(summary["not_resumed"]) == failed
    assert (summary["resumed"], summary["already_running"], summary["errors"]) == ([], [], {})
    assert "still FAILED" in said
    time.sleep(QUIET_PERIOD)
    for execution_id in failed:
        assert airflow.steps_run(execution_id) == ["ok_a", "boom"]
