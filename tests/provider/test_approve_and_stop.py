"""Approving from Airflow and stopping on kill: REST-only calls, on both APIs' connections.

Over a REST connection the approve operator approves (with its response) and the execute
operator and its trigger stop the execution they own when the task is killed; over gRPC, which
has neither call, the approve task fails naming the HTTP API and a kill leaves a warning.
"""

from __future__ import annotations

import logging

import pytest

from cerebelum_provider.models import ExecutionState
from cerebelum_provider.operators.cerebelum import CerebelumExecuteWorkflowOperator
from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger
from tests.core_apis import connection_uri
from tests.dagrun import output_of, run_dag
from tests.provider.test_operators import ORDER_STEPS

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def approval_core(core_factory, monkeypatch, airflow_db):
    emulator = core_factory(step_seconds=0.05)
    emulator.define_workflow("orders", ORDER_STEPS)
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(emulator))
    return emulator


def waiting_execution(core) -> str:
    execution_id = core.start_execution("orders", approval_at="ship")
    core.run_until_settled(execution_id)
    assert core.status(execution_id).status is ExecutionState.WAITING_FOR_APPROVAL
    return execution_id


@pytest.mark.apis("grpc", "http")  # approving is REST-only: over gRPC the operator fails naming api=http
def test_approve_operator_approves_with_its_response_and_waits(approval_core, core_api, capfd):
    execution_id = waiting_execution(approval_core)

    _, results = run_dag("cerebelum_approve", {"execution_id": execution_id, "note": "looks right"})

    state, xcoms, _ = results["approve"]
    if core_api == "grpc":
        assert state == "failed"
        assert "needs Core's HTTP API" in output_of(capfd)
        assert approval_core.status(execution_id).status is ExecutionState.WAITING_FOR_APPROVAL
        assert "ApproveExecution" not in approval_core.call_counts()
        return
    assert state == "success"
    result = xcoms["return_value"]
    assert result["approval_status"] == "approved"
    assert result["execution"]["status"] == "EXECUTION_COMPLETED"
    assert approval_core.approval_response(execution_id) == {"note": "looks right"}
    assert approval_core.call_counts()["ApproveExecution"] == 1


@pytest.mark.apis("http")
def test_approving_an_execution_that_waits_for_nothing_sends_nothing(approval_core, capfd):
    execution_id = approval_core.start_execution("orders")
    approval_core.complete(execution_id)

    _, results = run_dag("cerebelum_approve", {"execution_id": execution_id})

    assert results["approve"][0] == "failed"
    assert "is COMPLETED, not waiting for approval; nothing was sent" in output_of(capfd)
    assert "ApproveExecution" not in approval_core.call_counts()


def logged(caplog, capfd) -> str:
    """Everything logged: Airflow's structlog writes to the terminal, the stdlib to caplog."""
    return caplog.text + output_of(capfd)


@pytest.mark.apis("grpc", "http")  # only REST can stop an execution
def test_execute_operator_on_kill_stops_the_execution_it_started(approval_core, core_api, caplog, capfd):
    execution_id = approval_core.start_execution("orders")
    operator = CerebelumExecuteWorkflowOperator(task_id="execute", workflow_name="orders")
    operator._own_execution_id = execution_id

    with caplog.at_level(logging.INFO):
        operator.on_kill()

    assert approval_core.stopped(execution_id) is (core_api == "http")
    left_running = f"Cerebelum execution {execution_id} is left running" in logged(caplog, capfd)
    assert left_running is (core_api == "grpc")


def test_execute_operator_on_kill_stops_nothing_it_did_not_start_or_when_told_not_to(approval_core):
    execution_id = approval_core.start_execution("orders")
    CerebelumExecuteWorkflowOperator(task_id="never_started", workflow_name="orders").on_kill()
    told_not_to = CerebelumExecuteWorkflowOperator(task_id="keep", workflow_name="orders", stop_on_kill=False)
    told_not_to._own_execution_id = execution_id
    told_not_to.on_kill()

    assert not approval_core.stopped(execution_id)
    assert "StopExecution" not in approval_core.call_counts()


@pytest.mark.parametrize("stop_on_kill", [True, False])
@pytest.mark.apis("grpc", "http")  # only REST can stop an execution
async def test_trigger_on_kill_stops_only_when_asked(approval_core, core_api, stop_on_kill, caplog, capfd):
    execution_id = approval_core.start_execution("orders")
    classpath, kwargs = CerebelumExecutionTrigger(execution_id, stop_on_kill=stop_on_kill).serialize()
    trigger = CerebelumExecutionTrigger(**kwargs)  # as the triggerer rebuilds it

    with caplog.at_level(logging.INFO):
        await trigger.on_kill()

    assert approval_core.stopped(execution_id) is (stop_on_kill and core_api == "http")
    left_running = f"Cerebelum execution {execution_id} is left running" in logged(caplog, capfd)
    assert left_running is (stop_on_kill and core_api == "grpc")


def test_a_kill_whose_connection_cannot_be_read_only_warns(caplog, capfd):
    # The worker's kill goes through the hook's one stop, as the trigger's does: whatever the
    # lookup raises, the kill goes through with a warning naming the execution.
    operator = CerebelumExecuteWorkflowOperator(
        task_id="execute", workflow_name="orders", cerebelum_conn_id="cerebelum_no_such_connection"
    )
    operator._own_execution_id = "execution-of-a-killed-task"

    with caplog.at_level(logging.INFO):
        operator.on_kill()

    assert "Could not stop Cerebelum execution execution-of-a-killed-task" in logged(caplog, capfd)
