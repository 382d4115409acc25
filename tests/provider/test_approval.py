"""The one-task approval: wait for the ask, a person answers in Airflow's HITL, Core is told.

Each test runs ``dag.test()`` against the emulator and answers the request the way Airflow's
Required Actions page does (``tests/provider/_hitl.py``). Approval exists only in Core's HTTP API,
so every test but the gRPC refusal runs over HTTP.
"""

from __future__ import annotations

import datetime
import json

import pytest

from cerebelum_provider.client._rest_convert import approval_from_events
from cerebelum_provider.models import ExecutionState
from cerebelum_provider.operators.approval import CerebelumApprovalOperator
from tests.core_apis import connection_uri
from tests.dagrun import output_of
from tests.provider._hitl import HITL_GROUP, answered, expired_requests_swept
from tests.provider.test_operators import ORDER_STEPS

# One pytest-xdist worker for every test that answers a request (the example DAGs' one too): the
# answer goes through Airflow's public API route, whose import builds every public route, about 7 s
# of CPU in each worker that does it.
pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group(HITL_GROUP)]
TOKEN = "approval-s3cret-token"
#: Airflow 3.2's dag.test() cannot run the HITL trigger in line (its in-process supervisor does not
#: answer the trigger's GetHITLDetail request); 3.3 parks the task instead, which dag.test() handles.
#: A real 3.2 triggerer answers it; the floor stage runs only the tests that need no answer.
answered_in_dag_test = pytest.mark.airflow_3_3


@pytest.fixture
def approval_core(core_factory, monkeypatch, airflow_db):
    emulator = core_factory(step_seconds=0.05, token=TOKEN)
    emulator.define_workflow("orders", ORDER_STEPS)
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(emulator, token=TOKEN))
    return emulator


def run(dag_id: str, execution_id: str):
    """dag.test() one approval DAG; return (state, xcoms) of its one task."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from tests.provider.dags import cerebelum_approval_dags

    dag_run = getattr(cerebelum_approval_dags, dag_id).test(run_conf={"execution_id": execution_id})
    (ti,) = dag_run.get_task_instances()
    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_id, run_id=dag_run.run_id, task_id=ti.task_id)
        return ti.state, {row.key: row.value for row in rows}


@pytest.mark.apis("http")
@answered_in_dag_test
def test_approve_sends_the_persons_input_and_waits_for_completion(approval_core, capfd):
    # Still running when the task starts: the task waits (deferred) until the execution asks.
    execution_id = approval_core.start_execution("orders", approval_at="notify", approval_timeout_ms=600_000)

    with answered("cerebelum_approval", "decide", "Approve", {"note": "ship it"}) as request:
        state, xcoms = run("cerebelum_approval", execution_id)

    assert state == "success", output_of(capfd)
    result = xcoms["return_value"]
    assert result["approval_status"] == "approved"
    assert result["step"] == "notify" and result["responded_by"] == "alice"
    assert result["response"] == {"note": "ship it"}
    assert result["execution"]["status"] == "EXECUTION_COMPLETED"
    # Core got the person's input as the response the waiting step receives.
    assert approval_core.approval_response(execution_id) == {"note": "ship it"}
    assert approval_core.call_counts()["ApproveExecution"] == 1
    # The person saw Core's request: the step, what it asks, its timeout.
    assert request["options"] == ["Approve", "Reject"]
    assert request["subject"] == f"Approve Cerebelum execution {execution_id} at step notify?"
    assert "at step **notify**" in request["body"]
    assert "Core's timeout: 600 s" in request["body"]
    assert '"step": "notify"' in request["body"]
    assert list(request["params"]) == ["note"]
    output = output_of(capfd)
    assert TOKEN not in output and TOKEN not in json.dumps(xcoms) and TOKEN not in json.dumps(request)


@pytest.mark.apis("http")
@answered_in_dag_test
def test_approve_without_waiting_returns_at_once(approval_core):
    execution_id = approval_core.start_execution("orders", approval_at="charge")
    approval_core.run_until_settled(execution_id)

    with answered("cerebelum_approval_no_wait", "decide", "Approve"):
        state, xcoms = run("cerebelum_approval_no_wait", execution_id)

    assert state == "success"
    assert xcoms["return_value"]["response"] == {}
    assert "execution" not in xcoms["return_value"]
    assert approval_core.approval_response(execution_id) == {}


@pytest.mark.apis("http")
@answered_in_dag_test
def test_reject_stops_the_execution_and_fails_saying_who_rejected(approval_core, capfd):
    execution_id = approval_core.start_execution("orders", approval_at="charge")
    approval_core.run_until_settled(execution_id)

    with answered("cerebelum_approval", "decide", "Reject", {"note": "no"}, user="bob"):
        state, _ = run("cerebelum_approval", execution_id)

    assert state == "failed"
    assert (
        f"Cerebelum execution {execution_id}: approval rejected by bob; the execution was stopped in Core"
        in output_of(capfd)
    )
    assert approval_core.stopped(execution_id)
    assert "ApproveExecution" not in approval_core.call_counts()


@pytest.mark.apis("http")
@answered_in_dag_test
def test_nobody_answering_in_time_fails_and_leaves_the_execution_waiting(approval_core, capfd):
    execution_id = approval_core.start_execution("orders", approval_at="charge")
    approval_core.run_until_settled(execution_id)

    # Airflow 3.3 ends an expired request in the scheduler's sweep; before, the HITL trigger does.
    with expired_requests_swept(), answered("cerebelum_approval_short", "decide", None) as request:
        state, _ = run("cerebelum_approval_short", execution_id)

    assert state == "failed"
    assert request["subject"], "the request was shown"
    assert f"Nobody answered the approval request of Cerebelum execution {execution_id}" in output_of(capfd)
    assert approval_core.status(execution_id).status is ExecutionState.WAITING_FOR_APPROVAL
    assert not approval_core.stopped(execution_id)
    assert "ApproveExecution" not in approval_core.call_counts()


@pytest.mark.apis("http")
def test_an_execution_that_fails_before_asking_fails_the_task(approval_core, capfd):
    execution_id = approval_core.start_execution(
        "orders", fail_at="ship", error_message="warehouse closed", approval_at="notify"
    )

    with answered("cerebelum_approval", "decide", None) as request:  # only watches for a request
        state, _ = run("cerebelum_approval", execution_id)

    assert state == "failed"
    output = output_of(capfd)
    assert "warehouse closed" in output
    assert not request, "no request reached the Required Actions page"
    assert "ApproveExecution" not in approval_core.call_counts()


@pytest.mark.apis("http")
def test_an_execution_that_completes_without_asking_fails_the_task(approval_core, capfd):
    execution_id = approval_core.start_execution("orders")
    approval_core.complete(execution_id)

    state, _ = run("cerebelum_approval", execution_id)

    assert state == "failed"
    assert f"Cerebelum execution {execution_id} completed without asking for approval" in output_of(capfd)


@pytest.mark.apis("grpc")
def test_over_grpc_it_fails_at_once_naming_api_http(approval_core, capfd):
    execution_id = approval_core.start_execution("orders", approval_at="charge")
    approval_core.run_until_settled(execution_id)
    reads_before = approval_core.call_counts().get("GetExecutionStatus", 0)

    state, _ = run("cerebelum_approval", execution_id)

    assert state == "failed"
    output = output_of(capfd)
    assert "needs Core's HTTP API" in output and "set api=http on connection 'cerebelum_default'" in output
    assert approval_core.call_counts().get("GetExecutionStatus", 0) == reads_before
    assert approval_core.status(execution_id).status is ExecutionState.WAITING_FOR_APPROVAL


def test_bad_arguments_are_refused_when_the_dag_is_parsed():
    with pytest.raises(ValueError, match="params must not contain the key 'id'"):
        CerebelumApprovalOperator(task_id="a", execution_id="x", params={"id": "1"})
    with pytest.raises(ValueError, match="options cannot be given to CerebelumApprovalOperator"):
        CerebelumApprovalOperator(task_id="b", execution_id="x", options=["Yes"])
    with pytest.raises(ValueError, match="execution_id must be a non-empty string"):
        CerebelumApprovalOperator(task_id="c", execution_id=" ")


def test_the_request_is_read_from_cores_approval_event():
    asked_at = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    # The released Core wraps what the step raised (type, data, timeout) in approval_data.
    events = [
        {"type": "StepExecutedEvent", "data": {"step_name": "ok_a"}},
        {
            "type": "ApprovalRequestedEvent",
            "data": {
                "step_name": "ask",
                "approval_type": "manual",
                "approval_data": {"type": "manual", "data": {"amount": 5.0}, "timeout_ms": 600000},
            },
            "timestamp": "2026-01-01T00:00:00Z",
        },
    ]

    step, info = approval_from_events(events, now=asked_at + datetime.timedelta(seconds=60))

    assert step == "ask" and info.approval_type == "manual" and info.data == {"amount": 5.0}
    assert info.timeout_ms == 600000 and info.remaining_timeout_ms == 540000
    assert approval_from_events(events[:1]) is None
