"""The counting goals of the performance work, pinned: connections per Core, RPCs of sleeping executions,
exactly-once bulk resume when split as mapped tasks. Counts only; timings live in bench/.

Airflow is imported inside the tests, not at module level: this directory is collected before
tests/provider, whose conftest points AIRFLOW_HOME at a scratch folder before Airflow loads.
"""

from __future__ import annotations

import asyncio
import time

import psutil
import pytest

from cerebelum_provider.bulk import resume_matching
from cerebelum_provider.client import ExecutionClient, RetryConfig
from cerebelum_provider.models import ExecutionState

pytestmark = pytest.mark.timeout(120)

FAST_RETRY = RetryConfig(max_attempts=5, initial_backoff=0.01, max_backoff=0.05)


def established_to(port: int) -> int:
    """ESTABLISHED TCP connections from this process to ``port``."""
    return sum(
        1
        for connection in psutil.Process().net_connections(kind="tcp")
        if connection.status == psutil.CONN_ESTABLISHED and connection.raddr and connection.raddr.port == port
    )


async def run_to_event(trigger) -> dict:
    events = [event.payload async for event in trigger.run()]
    assert len(events) == 1, events
    return events[0]


async def test_many_triggers_on_two_cores_open_one_connection_per_core(core_factory, monkeypatch):
    from cerebelum_provider.hooks.cerebelum import CerebelumHook
    from cerebelum_provider.triggers._shared_poll import shared_poller
    from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger

    cores = [core_factory(), core_factory()]
    monkeypatch.setenv("AIRFLOW_CONN_PERF_A", f"cerebelum://{cores[0].address}?api=grpc")
    monkeypatch.setenv("AIRFLOW_CONN_PERF_B", f"cerebelum://{cores[1].address}?api=grpc")
    per_core = 60
    ids = {
        conn_id: [core.start_execution("orders") for _ in range(per_core)]
        for conn_id, core in zip(("perf_a", "perf_b"), cores)
    }
    triggers = [
        CerebelumExecutionTrigger(execution_id, cerebelum_conn_id=conn_id, poll_interval=0.05)
        for conn_id, execution_ids in ids.items()
        for execution_id in execution_ids
    ]
    tasks = [asyncio.ensure_future(run_to_event(trigger)) for trigger in triggers]
    # The waits of each Core share its listings, their first polls included.
    pollers = [
        shared_poller(await CerebelumHook(conn_id).get_async_client()) for conn_id in ("perf_a", "perf_b")
    ]
    while any(poller.waits < per_core for poller in pollers) or any(
        not core.call_counts().get("ListExecutions") for core in cores
    ):
        await asyncio.sleep(0.01)
    # Every trigger has polled; measured while all of them are still waiting.
    sockets = [established_to(core.port) for core in cores]
    for core, execution_ids in zip(cores, ids.values()):
        for execution_id in execution_ids:
            core.complete(execution_id)
    events = await asyncio.gather(*tasks)
    assert {event["status"] for event in events} == {"success"}
    assert sockets == [1, 1]
    assert [len(core.peers()) for core in cores] == [1, 1]


async def test_sleeping_executions_cost_at_most_two_polls_where_running_ones_cost_many(
    core_factory, monkeypatch
):
    from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger

    # Manual clocks: the sleeps never end, the running executions never move.
    sleepy, busy = core_factory(), core_factory()
    monkeypatch.setenv("AIRFLOW_CONN_PERF_SLEEPY", f"cerebelum://{sleepy.address}?api=grpc")
    # Each wait reads its own execution here, as fast as asked: waits on one workflow would share
    # one listing, and the default request budget would stretch 25 polls every 0.05 s.
    monkeypatch.setenv(
        "AIRFLOW_CONN_PERF_BUSY",
        f"cerebelum://{busy.address}?api=grpc&coalesce_polling=false&request_budget=1000000",
    )
    count = 25
    sleeping = [sleepy.start_execution("naps", sleep_at=0, sleep_ms=600_000) for _ in range(count)]
    sleepy.advance(1)
    assert {sleepy.status(execution_id).status for execution_id in sleeping} == {ExecutionState.SLEEPING}
    running = [busy.start_execution("orders") for _ in range(count)]
    # Two seconds: about 40 polls a running execution asks for, of which a loaded machine once
    # answered only 4 in one second (the check below needs 5).
    end_time = time.time() + 2.0
    triggers = [
        CerebelumExecutionTrigger(
            execution_id, cerebelum_conn_id=conn_id, poll_interval=0.05, end_time=end_time
        )
        for conn_id, execution_ids in (("perf_sleepy", sleeping), ("perf_busy", running))
        for execution_id in execution_ids
    ]
    events = await asyncio.gather(*(run_to_event(trigger) for trigger in triggers))
    assert {event["status"] for event in events} == {"timeout"}
    # A sleeping execution is asked once, then once more at the deadline...
    assert sleepy.call_counts()["GetExecutionStatus"] == 2 * count
    # ...where polling at the interval asks many times over the same window.
    assert busy.call_counts()["GetExecutionStatus"] >= 5 * count


async def test_bulk_resume_split_like_mapped_tasks_resumes_each_execution_exactly_once(core):
    workflows = ["orders", "billing", "shipping", "emails"]
    ids = {
        workflow: [core.start_execution(workflow, fail_at=0) for _ in range(120)] for workflow in workflows
    }
    core.run_until_settled()
    every_id = [execution_id for execution_ids in ids.values() for execution_id in execution_ids]
    assert set(core.execution_ids(ExecutionState.FAILED)) == set(every_id)

    async with ExecutionClient(core.address, retry=FAST_RETRY) as client:
        # One engine per workflow at the same time, as .expand(workflow_name=[...]) runs them.
        summaries = await asyncio.gather(
            *(resume_matching(client, workflow_name=workflow, max_concurrency=8) for workflow in workflows)
        )
        leftover = await resume_matching(client, max_concurrency=8)

    for workflow, summary in zip(workflows, summaries):
        assert sorted(summary.resumed) == sorted(ids[workflow])
        assert summary.errors == {} and summary.already_running == []
    assert leftover.matched == 0
    assert [core.resume_count(execution_id) for execution_id in every_id] == [1] * len(every_id)
    assert core.call_counts()["ResumeExecution"] == len(every_id)
