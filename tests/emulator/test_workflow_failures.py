"""``define_workflow(fail_at=...)``: executions started by ExecuteWorkflow (gRPC or REST) fail at a step
a set number of times, a resume re-runs from that step, and ``step_runs`` proves nothing ran twice."""

from __future__ import annotations

import grpc
import pytest

from cerebelum_provider.models import ExecutionState
from cerebelum_provider.proto import worker_service_pb2 as pb
from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

EXECUTIONS = "/api/v1/executions"
STEPS = ["extract", "transform", "load"]


def resume(stub, execution_id) -> str:
    return stub.ResumeExecution(pb.ResumeExecutionRequest(execution_id=execution_id), timeout=5).status


def test_grpc_executions_fail_at_the_step_fail_times_times_then_resume_completes(core, stub):
    core.define_workflow("etl", STEPS, fail_at="transform", fail_times=2)
    execution_id = stub.ExecuteWorkflow(pb.ExecuteRequest(workflow_module="etl"), timeout=5).execution_id
    for attempt in (1, 2):
        core.run_until_settled(execution_id)
        status = core.status(execution_id)
        assert (status.status, status.current_step_name) == (ExecutionState.FAILED, "transform"), attempt
        assert core.step_runs(execution_id) == {"extract": 1, "transform": attempt}
        assert resume(stub, execution_id) == "resumed"
    core.run_until_settled(execution_id)
    assert core.status(execution_id).status is ExecutionState.COMPLETED
    assert core.step_runs(execution_id) == {"extract": 1, "transform": 3, "load": 1}
    assert core.resume_count(execution_id) == 2


def test_rest_executions_fail_the_same_way(core, http):
    core.define_workflow("etl", STEPS, fail_at=2)
    execution_id = http.post(EXECUTIONS, json={"workflow": "etl"}).json()["data"]["id"]
    core.run_until_settled(execution_id)
    assert http.get(f"{EXECUTIONS}/{execution_id}").json()["state"] == "failed"
    assert http.post(f"{EXECUTIONS}/{execution_id}/resume").status_code == 200
    core.run_until_settled(execution_id)
    assert http.get(f"{EXECUTIONS}/{execution_id}").json()["state"] == "completed"
    assert core.step_runs(execution_id) == {"extract": 1, "transform": 1, "load": 2}


def test_executions_started_from_python_keep_their_own_plan(core):
    core.define_workflow("etl", STEPS, fail_at="extract")
    execution_id = core.start_execution("etl")
    core.run_until_settled(execution_id)
    assert core.status(execution_id).status is ExecutionState.COMPLETED


def test_redefining_without_fail_at_ends_the_failures_and_old_calls_still_work(core, stub):
    core.define_workflow("etl", STEPS, fail_at="load")
    core.define_workflow("etl", STEPS)
    execution_id = stub.ExecuteWorkflow(pb.ExecuteRequest(workflow_module="etl"), timeout=5).execution_id
    core.run_until_settled(execution_id)
    assert core.step_runs(execution_id) == {"extract": 1, "transform": 1, "load": 1}


def test_the_failing_plan_survives_a_restart(tmp_path, core_factory):
    db = tmp_path / "core.sqlite"
    first = core_factory(db_path=db)
    first.define_workflow("etl", STEPS, fail_at="transform")
    first.stop()
    again = core_factory(db_path=db)
    with grpc.insecure_channel(again.address) as channel:
        stub = pb_grpc.WorkerServiceStub(channel)
        execution_id = stub.ExecuteWorkflow(pb.ExecuteRequest(workflow_module="etl"), timeout=5).execution_id
    again.run_until_settled(execution_id)
    assert again.status(execution_id).current_step_name == "transform"


def test_unknown_ids_have_no_runs(core):
    assert core.step_runs("nope") == {}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"fail_at": "nope"}, "fail_at='nope' is not a step"),
        ({"fail_at": 3}, "out of range"),
        ({"fail_at": "load", "fail_times": 0}, "fail_times must be an int >= 1"),
    ],
)
def test_bad_failure_plans_are_refused_naming_the_value(core, kwargs, error):
    with pytest.raises(ValueError, match=error):
        core.define_workflow("etl", STEPS, **kwargs)
