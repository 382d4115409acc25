"""One state, two faces: gRPC and REST answer the same about the same executions."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from cerebelum_provider.proto import worker_service_pb2 as pb

EXECUTIONS = "/api/v1/executions"
REST_STATE = {
    pb.EXECUTION_RUNNING: "running",
    pb.EXECUTION_COMPLETED: "completed",
    pb.EXECUTION_FAILED: "failed",
    pb.EXECUTION_SLEEPING: "sleeping",
    pb.EXECUTION_WAITING_FOR_APPROVAL: "waiting_for_approval",
}


@pytest.fixture
def mixed(core) -> list[str]:
    plans = [{}, {"fail_at": 2}, {"sleep_at": 1}, {"approval_at": 3}, {}, {"fail_at": 0}]
    ids = [core.start_execution("orders", {"n": n}, **plan) for n, plan in enumerate(plans)]
    core.advance(2)
    core.complete(ids[4])
    return ids


def test_status_and_show_agree(core, stub, http, mixed):
    for execution_id in mixed:
        status = stub.GetExecutionStatus(pb.GetExecutionStatusRequest(execution_id=execution_id), timeout=5)
        shown = http.get(f"{EXECUTIONS}/{execution_id}").json()
        assert shown["state"] == REST_STATE[status.status]
        assert shown["progress"] == f"{status.current_step_index}/{status.total_steps}"
        if status.current_step_name:
            assert shown["current_step"] == status.current_step_name
        assert shown["results"] == {
            name: json_format.MessageToDict(output) for name, output in status.step_outputs.items()
        }


def test_listings_agree_on_order_and_totals(core, stub, http, mixed):
    grpc_ids = [e.execution_id for e in stub.ListExecutions(pb.ListExecutionsRequest(), timeout=5).executions]
    rest_ids = [summary["id"] for summary in http.get(EXECUTIONS).json()["executions"]]
    assert grpc_ids == rest_ids == sorted(mixed)
    for state, word in [(pb.EXECUTION_FAILED, "failed"), (pb.EXECUTION_COMPLETED, "completed")]:
        over_grpc = stub.ListExecutions(pb.ListExecutionsRequest(status=state), timeout=5)
        over_rest = http.get(EXECUTIONS, params={"status": word}).json()
        assert over_grpc.total_count == over_rest["total"] > 0
        assert [e.execution_id for e in over_grpc.executions] == [s["id"] for s in over_rest["executions"]]


def test_a_change_through_one_face_shows_through_the_other(core, stub, http):
    started = http.post(EXECUTIONS, json={"workflow": "orders", "input": {"k": "v"}}).json()["data"]["id"]
    status = stub.GetExecutionStatus(pb.GetExecutionStatusRequest(execution_id=started), timeout=5)
    assert (status.status, json_format.MessageToDict(status.inputs)) == (pb.EXECUTION_RUNNING, {"k": "v"})
    handle = stub.ExecuteWorkflow(pb.ExecuteRequest(workflow_module="orders"), timeout=5)
    assert http.get(f"{EXECUTIONS}/{handle.execution_id}").json()["state"] == "running"
    assert core.call_counts() == {"ExecuteWorkflow": 2, "GetExecutionStatus": 2}
