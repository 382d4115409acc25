"""On the demo set, the published cerebelum-sdk, a raw stub and our client read the same answers.

The SDK runs in a subprocess (tests/peers/sdk_peer.py prints its answers as JSON): it cannot
share a process with our generated proto code. Each answer is put in the peer's shape and
compared field by field. The SDK's listing without a workflow filter sends ``workflow_name=""``,
which matches nothing on Core, so listings are compared per workflow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from cerebelum_provider.client import SyncExecutionClient
from cerebelum_provider.client._convert import struct_to_python
from cerebelum_provider.proto import worker_service_pb2 as pb
from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc
from tests.peers.peer_shape import peer_shape

PEER = Path(__file__).resolve().parents[1] / "peers" / "sdk_peer.py"


def sdk(address, *args):
    done = subprocess.run(
        [sys.executable, str(PEER), address, *args], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout)


def _epoch(message, name):
    return getattr(message, name).ToMicroseconds() / 1e6 if message.HasField(name) else None


def wire_shape(message: pb.ExecutionStatus) -> dict:
    """A raw ExecutionStatus in the peer's shape."""
    error = None
    if message.HasField("error"):
        error = {
            "kind": message.error.kind,
            "message": message.error.message,
            "stacktrace": message.error.stacktrace,
        }
    sleep = message.sleep_info
    approval = message.approval_info
    return {
        "execution_id": message.execution_id,
        "workflow_name": message.workflow_name,
        "status": pb.ExecutionState.Name(message.status),
        "started_at": _epoch(message, "started_at"),
        "completed_at": _epoch(message, "completed_at"),
        "current_step_index": message.current_step_index,
        "total_steps": message.total_steps,
        "current_step_name": message.current_step_name,
        "progress_percentage": message.current_step_index / message.total_steps * 100
        if message.total_steps
        else 0.0,
        "completed_steps": [
            {"step_name": step.step_name, "step_index": step.step_index, "status": step.status}
            for step in message.completed_steps
        ],
        "inputs": struct_to_python(message.inputs),
        "step_outputs": {name: struct_to_python(output) for name, output in message.step_outputs.items()},
        "error": error,
        "sleep_info": {"duration_ms": sleep.duration_ms, "data": struct_to_python(sleep.data)}
        if message.HasField("sleep_info")
        else None,
        "approval_info": {
            "approval_type": approval.approval_type,
            "timeout_ms": approval.timeout_ms,
            "data": struct_to_python(approval.data),
        }
        if message.HasField("approval_info")
        else None,
    }


def assert_same(*shapes: dict) -> None:
    first = shapes[0]
    for other in shapes[1:]:
        assert other.keys() == first.keys()
        for key in first:
            if key in ("started_at", "completed_at") and first[key] is not None:
                assert other[key] == pytest.approx(first[key], abs=1e-6), key
            else:
                assert other[key] == first[key], key  # 1004.0 == 1004: the same JSON number


@pytest.fixture
def demo(core_factory):
    return core_factory(demo=True)


def test_sdk_raw_stub_and_our_client_read_the_same_demo_statuses(demo):
    ids = demo.execution_ids()
    theirs = sdk(demo.address, "get", *ids)
    with grpc.insecure_channel(demo.address) as channel:
        stub = pb_grpc.WorkerServiceStub(channel)
        raw = [
            wire_shape(stub.GetExecutionStatus(pb.GetExecutionStatusRequest(execution_id=i), timeout=10))
            for i in ids
        ]
    with SyncExecutionClient(demo.address) as client:
        ours = [peer_shape(client.get_execution_status(i)) for i in ids]
    assert len(theirs) == len(raw) == len(ours) == 9
    assert {shape["status"] for shape in theirs} == {
        "EXECUTION_RUNNING",
        "EXECUTION_SLEEPING",
        "EXECUTION_WAITING_FOR_APPROVAL",
        "EXECUTION_COMPLETED",
        "EXECUTION_FAILED",
    }
    for their, wire, our in zip(theirs, raw, ours, strict=True):
        assert_same(wire, their, our)


@pytest.mark.parametrize(
    ("workflow", "status"),
    [("orders", None), ("billing", None), ("orders", "FAILED"), ("billing", "RUNNING")],
)
def test_sdk_raw_stub_and_our_client_list_the_same_demo_pages(demo, workflow, status):
    sdk_args = ["list", "--workflow", workflow, "--limit", "3"] + (["--status", status] if status else [])
    theirs = sdk(demo.address, *sdk_args)
    request = pb.ListExecutionsRequest(workflow_name=workflow, limit=3)
    if status:
        request.status = pb.ExecutionState.Value(f"EXECUTION_{status}")
    with grpc.insecure_channel(demo.address) as channel:
        raw = pb_grpc.WorkerServiceStub(channel).ListExecutions(request, timeout=10)
    with SyncExecutionClient(demo.address) as client:
        ours, total, has_more = client.list_executions(workflow_name=workflow, status=status, limit=3)
    assert theirs["total_count"] == raw.total_count == total > 0
    assert theirs["has_more"] == raw.has_more == has_more
    assert len(theirs["executions"]) == len(raw.executions) == len(ours)
    for their, wire, our in zip(theirs["executions"], raw.executions, ours, strict=True):
        assert_same(wire_shape(wire), their, peer_shape(our))


def test_sdk_and_our_client_get_the_same_resume_answers(demo):
    assert sdk(demo.address, "resume", "demo-orders-failed")["answer"] == "resumed"
    with SyncExecutionClient(demo.address) as client:
        assert client.resume_execution("demo-orders-failed") == "already_running"
        assert client.resume_execution("demo-billing-failed") == "resumed"
        assert client.resume_execution("demo-orders-completed") == "failed_to_resume"
    assert sdk(demo.address, "resume", "demo-billing-failed")["answer"] == "already_running"
    assert sdk(demo.address, "resume", "demo-orders-completed")["answer"] == "failed_to_resume"
    assert sdk(demo.address, "resume", "no-such-execution")["answer"] == "failed_to_resume"
    assert (demo.resume_count("demo-orders-failed"), demo.resume_count("demo-billing-failed")) == (1, 1)
