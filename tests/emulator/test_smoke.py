"""The emulator starts, answers a status query over loopback and stops."""

from __future__ import annotations

import grpc

from cerebelum_provider.proto import worker_service_pb2 as pb
from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc


def test_started_execution_is_running_at_its_first_step(core):
    execution_id = core.start_execution("orders", inputs={"n": 1})
    with grpc.insecure_channel(core.address) as channel:
        answer = pb_grpc.WorkerServiceStub(channel).GetExecutionStatus(
            pb.GetExecutionStatusRequest(execution_id=execution_id), timeout=5
        )
    assert answer.execution_id == execution_id
    assert answer.status == pb.EXECUTION_RUNNING
    assert answer.current_step_index == 0
    assert answer.total_steps == 4
    assert core.call_counts() == {"GetExecutionStatus": 1}
