"""Retries that never run a step twice, and deadlines that hold while a task is deferred.

Through ``dag.test()`` against the emulator, over both APIs: an Airflow retry of the execute
operator resumes the execution the first try started (its completed steps are not run again,
``step_runs``) instead of starting over; a deferred wait ends at the task's ``execution_timeout``
with the execution's last state, and stops the execution it started (HTTP API).
"""

from __future__ import annotations

import time

import pytest

from cerebelum_provider.models import ExecutionState
from tests.core_apis import connection_uri
from tests.dagrun import output_of, run_dag
from tests.provider.test_operators import ORDER_STEPS

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def failing_once_core(core_factory, monkeypatch, airflow_db):
    """Executions of 'orders' started by ExecuteWorkflow fail once at their last step."""
    emulator = core_factory(step_seconds=0.05)
    emulator.define_workflow("orders", ORDER_STEPS, fail_at=ORDER_STEPS[-1], fail_times=1)
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(emulator))
    return emulator


@pytest.mark.parametrize("mode", ["poll", "deferrable"])
def test_a_retry_resumes_the_failed_execution_and_runs_no_step_twice(failing_once_core, mode, capfd):
    core = failing_once_core

    _, results = run_dag(f"cerebelum_execute_retry_resumes_{mode}", {"workflow_name": "orders"})

    state, xcoms, try_number = results["execute"]
    assert state == "success" and try_number == 2
    counts = core.call_counts()
    assert counts["ExecuteWorkflow"] == 1
    assert counts["ResumeExecution"] >= 1
    (execution_id,) = core.execution_ids()
    assert xcoms["return_value"]["execution_id"] == execution_id
    assert xcoms["return_value"]["status"] == "EXECUTION_COMPLETED"
    # Every step ran once; the one that failed ran once more, on the resume.
    assert core.step_runs(execution_id) == {**dict.fromkeys(ORDER_STEPS[:-1], 1), ORDER_STEPS[-1]: 2}
    assert f"Execution {execution_id} of an earlier try FAILED: resuming it" in output_of(capfd)


def test_a_retry_that_cannot_resume_fails_and_starts_nothing(failing_once_core, capfd):
    core = failing_once_core
    core.set_resume_without_effect("already_running")

    _, results = run_dag("cerebelum_execute_retry_resumes_poll", {"workflow_name": "orders"})

    state, _, try_number = results["execute"]
    assert state == "failed" and try_number == 2
    (execution_id,) = core.execution_ids()
    assert core.status(execution_id).status is ExecutionState.FAILED
    assert core.call_counts()["ExecuteWorkflow"] == 1  # never a second start that reruns the steps
    assert "still FAILED" in output_of(capfd)
    assert core.step_runs(execution_id) == dict.fromkeys(ORDER_STEPS, 1)


@pytest.mark.apis("grpc", "http")  # only REST can stop the execution when the deadline kills the task
def test_a_deferred_wait_ends_at_the_execution_timeout_and_stops_its_execution(
    core_factory, monkeypatch, airflow_db, core_api, capfd
):
    core = core_factory()  # a manual clock: the execution never moves on by itself
    core.define_workflow("orders", ORDER_STEPS)
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core))

    started = time.monotonic()
    _, results = run_dag("cerebelum_execute_execution_timeout")
    took = time.monotonic() - started

    assert results["execute"][0] == "failed"
    # The wait ended at the 3 s execution_timeout, not at the operator's own 7-day limit: the bound
    # is loose on purpose (dag.test() and the triggerer start slowly on a loaded machine).
    assert took < 120, took
    (execution_id,) = core.execution_ids()
    output = output_of(capfd)
    assert f"Cerebelum execution {execution_id} did not finish by the deadline; it is still RUNNING" in output
    # The operator owns the execution it started: at the deadline it stops it (HTTP API only).
    assert core.stopped(execution_id) is (core_api == "http")
    if core_api == "grpc":
        assert f"Cerebelum execution {execution_id} is left running" in output
