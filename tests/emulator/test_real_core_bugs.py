"""The real release's bugs on demand: status queries that crash over gRPC, resumes that do nothing."""

from __future__ import annotations

import grpc
import httpx
import pytest

from cerebelum_provider.emulator import RealCoreBugs
from cerebelum_provider.models import ExecutionState
from cerebelum_provider.proto import worker_service_pb2 as pb
from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

EXECUTIONS = "/api/v1/executions"


def failed(core) -> str:
    execution_id = core.start_execution("orders", fail_at=1)
    core.run_until_settled(execution_id)
    return execution_id


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def test_bugs_are_off_by_default(core, stub):
    execution_id = failed(core)
    assert core.real_core_bugs == RealCoreBugs()
    status = stub.GetExecutionStatus(pb.GetExecutionStatusRequest(execution_id=execution_id), timeout=5)
    assert status.status == pb.EXECUTION_FAILED
    handle = stub.ResumeExecution(pb.ResumeExecutionRequest(execution_id=execution_id), timeout=5)
    assert handle.status == "resumed"


def test_status_crash_fails_status_queries_of_existing_executions_and_non_empty_pages(core, stub, http):
    execution_id = failed(core)
    core.set_status_crash()
    error = rpc_error(
        lambda: stub.GetExecutionStatus(pb.GetExecutionStatusRequest(execution_id=execution_id), timeout=5)
    )
    assert (error.code(), error.details()) == (grpc.StatusCode.UNKNOWN, "Internal Server Error")
    unknown = stub.GetExecutionStatus(pb.GetExecutionStatusRequest(execution_id="nope"), timeout=5)
    assert unknown.error.kind == "not_found"
    error = rpc_error(lambda: stub.ListExecutions(pb.ListExecutionsRequest(), timeout=5))
    assert (error.code(), error.details()) == (grpc.StatusCode.UNKNOWN, "Internal Server Error")
    empty = stub.ListExecutions(pb.ListExecutionsRequest(workflow_name=""), timeout=5)
    assert (len(empty.executions), empty.total_count) == (0, 0)
    # REST reads the same execution fine.
    assert http.get(f"{EXECUTIONS}/{execution_id}").json()["state"] == "failed"
    assert http.get(EXECUTIONS).json()["total"] == 1
    core.set_status_crash(False)
    assert stub.ListExecutions(pb.ListExecutionsRequest(), timeout=5).total_count == 1


@pytest.mark.parametrize("finish", ["fail", "complete"])
def test_resume_already_running_leaves_a_finished_execution_as_it_was(core, stub, http, finish):
    execution_id = failed(core) if finish == "fail" else core.start_execution("orders")
    if finish == "complete":
        core.complete(execution_id)
    before, runs = core.status(execution_id), core.step_runs(execution_id)
    core.set_resume_without_effect("already_running")
    answer = stub.ResumeExecution(pb.ResumeExecutionRequest(execution_id=execution_id), timeout=5)
    assert answer.status == "already_running"
    rest = http.post(f"{EXECUTIONS}/{execution_id}/resume")
    assert (rest.status_code, rest.json()) == (422, {"error": ":already_running"})
    core.run_until_settled()
    assert core.status(execution_id) == before
    assert core.step_runs(execution_id) == runs
    assert core.resume_count(execution_id) == 2


def test_resume_after_a_restart_answers_resumed_and_only_records_the_failure_again(core, stub, http):
    execution_id = failed(core)
    core.set_resume_without_effect("resumed")
    answer = stub.ResumeExecution(pb.ResumeExecutionRequest(execution_id=execution_id), timeout=5)
    assert answer.status == "resumed"
    assert http.post(f"{EXECUTIONS}/{execution_id}/resume").json()["status"] == "resumed"
    core.run_until_settled()
    assert core.status(execution_id).status is ExecutionState.FAILED
    assert core.step_runs(execution_id) == {"initialize": 1, "process": 1}
    assert core.resume_count(execution_id) == 2
    types = [event["type"] for event in http.get(f"{EXECUTIONS}/{execution_id}/events").json()["events"]]
    assert types[-3:] == ["ExecutionFailedEvent"] * 3
    completed = core.start_execution("orders")
    core.complete(completed)
    assert stub.ResumeExecution(pb.ResumeExecutionRequest(execution_id=completed), timeout=5).status == (
        "failed_to_resume"
    )


def test_real_core_bugs_true_is_the_release_as_measured(core_factory):
    buggy = core_factory(real_core_bugs=True)
    assert buggy.real_core_bugs == RealCoreBugs(status_crash=True, resume_without_effect="already_running")
    execution_id = failed(buggy)
    with grpc.insecure_channel(buggy.address) as channel:
        stub = pb_grpc.WorkerServiceStub(channel)
        request = pb.GetExecutionStatusRequest(execution_id=execution_id)
        crashed = rpc_error(lambda: stub.GetExecutionStatus(request, timeout=5))
        assert crashed.code() == grpc.StatusCode.UNKNOWN
        handle = stub.ResumeExecution(pb.ResumeExecutionRequest(execution_id=execution_id), timeout=5)
        assert handle.status == "already_running"
    with httpx.Client(base_url=buggy.http_url, timeout=5) as client:
        assert client.get(f"{EXECUTIONS}/{execution_id}").json()["state"] == "failed"
    buggy.set_real_core_bugs(None)
    assert buggy.real_core_bugs == RealCoreBugs()


def test_bad_bug_settings_are_refused_with_the_value(core, core_factory):
    with pytest.raises(ValueError, match="'sometimes'"):
        core.set_resume_without_effect("sometimes")
    with pytest.raises(TypeError, match="real_core_bugs"):
        core_factory(real_core_bugs="yes")
