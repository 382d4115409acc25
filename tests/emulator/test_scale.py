"""10,000 executions: filtered pages stay correct, resumes move them between states (not places),
a restart replays them all."""

from __future__ import annotations

import grpc
import pytest

from cerebelum_provider.emulator import CoreEmulator
from cerebelum_provider.proto import worker_service_pb2 as pb
from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

COUNT = 10_000


@pytest.mark.slow
def test_ten_thousand_failed_executions_page_resume_and_replay(tmp_path):
    db = str(tmp_path / "core.sqlite")
    with CoreEmulator(db_path=db) as core, grpc.insecure_channel(core.address) as channel:
        core.load_scenario(
            {"executions": [{"workflow": "orders", "fail_at": 0, "settle": True, "count": COUNT}]}
        )
        stub = pb_grpc.WorkerServiceStub(channel)
        seen = []
        for offset in range(0, COUNT, 100):
            page = stub.ListExecutions(
                pb.ListExecutionsRequest(status=pb.EXECUTION_FAILED, limit=100, offset=offset), timeout=30
            )
            assert page.total_count == COUNT
            seen.extend(execution.execution_id for execution in page.executions)
        assert len(seen) == len(set(seen)) == COUNT
        assert not page.has_more

        first_page = seen[:100]
        for execution_id in first_page:
            assert stub.ResumeExecution(
                pb.ResumeExecutionRequest(execution_id=execution_id), timeout=30
            ).status == ("resumed")
        failed = stub.ListExecutions(
            pb.ListExecutionsRequest(status=pb.EXECUTION_FAILED, limit=1), timeout=30
        )
        running = stub.ListExecutions(
            pb.ListExecutionsRequest(status=pb.EXECUTION_RUNNING, workflow_name="orders", limit=100),
            timeout=30,
        )
        assert failed.total_count == COUNT - 100
        assert seen == sorted(seen)
        assert [execution.execution_id for execution in running.executions] == first_page
        everything = stub.ListExecutions(pb.ListExecutionsRequest(limit=100), timeout=30)
        assert [execution.execution_id for execution in everything.executions] == first_page
    with CoreEmulator(db_path=db) as reopened:
        assert len(reopened.execution_ids("FAILED")) == COUNT - 100
        assert sum(reopened.resume_count(execution_id) for execution_id in first_page) == 100
