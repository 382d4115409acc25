"""Rerun what Core does not resume: the client, the bulk engine and the operators against the emulator.

The emulator plays the released Core as measured (``real_core_bugs=True``): a resume of a FAILED
execution answers "already_running" and nothing runs, and the event log's ExecutionStartedEvent
carries the workflow (``blueprint_name``) and the inputs as Core's event store writes them
(booleans as "true"/"false"). A rerun is a new execution of the workflow with those inputs, plus
the input naming the execution it reruns; the tests count starts (``ExecuteWorkflow``) to prove
each failed execution is rerun exactly once, across runs and retries. Rerunning reads the event
log, which only Core's HTTP API serves: over gRPC the option is refused before anything is sent.
"""

from __future__ import annotations

from typing import Any

import pytest

from cerebelum_provider.bulk import resume_matching
from cerebelum_provider.client import RERUN_OF_INPUT, ExecutionClient, RetryConfig, SyncExecutionClient
from cerebelum_provider.exceptions import RerunRefusedError, UnsupportedOperationError
from cerebelum_provider.models import ExecutionState
from cerebelum_provider.operators.cerebelum import (
    CerebelumBulkResumeOperator,
    CerebelumExecuteWorkflowOperator,
    CerebelumResumeExecutionOperator,
)
from tests.core_apis import connection_uri, core_url
from tests.dagrun import output_of, run_dag

pytestmark = pytest.mark.timeout(120)

ORDER_STEPS = ["validate", "charge", "ship", "notify"]
FAST_RETRY = RetryConfig(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)
#: What every refusal over gRPC must tell the user: the API that can rerun, and how to pick it.
HTTP_API_HINT = "api=http in the Airflow connection"


def released_core(core_factory, **kwargs: Any):
    """An emulator playing the release as measured: resume of a FAILED execution has no effect."""
    core = core_factory(real_core_bugs=True, **kwargs)
    core.define_workflow("orders", ORDER_STEPS)
    return core


def seed_failed(core, count: int) -> list[str]:
    """``count`` executions of "orders" FAILED at "charge", each with inputs of its own."""
    ids = [
        core.start_execution("orders", {"order": n, "express": True}, fail_at="charge") for n in range(count)
    ]
    for execution_id in ids:
        core.run_until_settled(execution_id)
    assert all(core.status(execution_id).status is ExecutionState.FAILED for execution_id in ids)
    return ids


def started_inputs(core, execution_id: str) -> dict[str, Any]:
    with SyncExecutionClient(core.http_url) as client:
        events = client.get_execution_events(execution_id)
    (started,) = [event for event in events if event["type"] == "ExecutionStartedEvent"]
    return started["data"]["inputs"]


# The client -------------------------------------------------------------------------------------


@pytest.mark.apis("http")
async def test_client_reruns_with_the_inputs_core_stored_and_finds_the_rerun_the_next_time(core_factory):
    core = released_core(core_factory)
    (failed,) = seed_failed(core, 1)

    async with ExecutionClient(core_url(core), retry=FAST_RETRY) as client:
        rerun = await client.rerun_execution(failed)
        again = await client.rerun_execution(failed)
    with SyncExecutionClient(core_url(core), retry=FAST_RETRY) as client:
        found_blocking = client.rerun_execution(failed)
        reruns = client.find_reruns("orders")

    assert rerun.execution_id == failed and rerun.workflow_name == "orders" and rerun.started is True
    assert again.rerun_execution_id == found_blocking.rerun_execution_id == rerun.rerun_execution_id
    assert again.started is found_blocking.started is False
    assert reruns == {failed: rerun.rerun_execution_id}
    assert core.call_counts()["ExecuteWorkflow"] == 1
    # Core's event store writes true as "true": the rerun gets the inputs as Core stored them.
    assert started_inputs(core, rerun.rerun_execution_id) == {
        "order": 0,
        "express": "true",
        RERUN_OF_INPUT: failed,
    }
    assert core.status(failed).status is ExecutionState.FAILED
    core.run_until_settled(rerun.rerun_execution_id)
    assert core.status(rerun.rerun_execution_id).status is ExecutionState.COMPLETED
    # Every step runs again in the rerun, the completed "validate" included.
    assert core.step_runs(rerun.rerun_execution_id) == dict.fromkeys(ORDER_STEPS, 1)


@pytest.mark.apis("http")
def test_client_never_reruns_a_rerun(core_factory):
    core = released_core(core_factory)
    (failed,) = seed_failed(core, 1)
    with SyncExecutionClient(core_url(core)) as client:
        rerun = client.rerun_execution(failed)

        with pytest.raises(
            RerunRefusedError, match=f"{rerun.rerun_execution_id} is itself a rerun \\(of {failed}"
        ):
            client.rerun_execution(rerun.rerun_execution_id)

    assert core.call_counts()["ExecuteWorkflow"] == 1


@pytest.mark.apis("grpc")
async def test_client_refuses_to_rerun_over_grpc_naming_api_http_before_sending(core_factory):
    core = released_core(core_factory)
    (failed,) = seed_failed(core, 1)

    async with ExecutionClient(core_url(core)) as client:
        with pytest.raises(UnsupportedOperationError, match=HTTP_API_HINT):
            await client.rerun_execution(failed)
        with pytest.raises(UnsupportedOperationError, match=HTTP_API_HINT):
            await client.find_reruns("orders")
    with pytest.raises(UnsupportedOperationError, match=HTTP_API_HINT):
        await resume_matching(ExecutionClient(core_url(core)), on_not_resumed="rerun")

    assert core.call_counts() == {}


# The bulk engine --------------------------------------------------------------------------------


@pytest.mark.apis("http")
async def test_bulk_reruns_each_once_and_a_second_run_reruns_none(core_factory):
    core = released_core(core_factory)
    failed = seed_failed(core, 3)

    async with ExecutionClient(core_url(core), retry=FAST_RETRY) as client:
        first = await resume_matching(
            client, workflow_name="orders", on_not_resumed="rerun", resume_check_grace=0
        )
        second = await resume_matching(
            client, workflow_name="orders", on_not_resumed="rerun", resume_check_grace=0
        )

    assert sorted(first.rerun) == sorted(failed)
    assert first.resumed == first.already_running == first.not_resumed == [] and first.errors == {}
    assert first.failed is False
    # The second run finds every rerun; it starts none. The reruns themselves are RUNNING, not listed.
    assert second.rerun == {} and second.already_rerun == first.rerun
    assert second.matched == 3 and second.failed is False
    assert core.call_counts()["ExecuteWorkflow"] == 3
    assert len(set(first.rerun.values())) == 3
    for execution_id, rerun_execution_id in first.rerun.items():
        assert started_inputs(core, rerun_execution_id)[RERUN_OF_INPUT] == execution_id
        assert core.status(execution_id).status is ExecutionState.FAILED


@pytest.mark.apis("http")
async def test_bulk_after_a_worker_died_mid_run_starts_only_the_missing_reruns(core_factory):
    core = released_core(core_factory)
    failed = seed_failed(core, 3)
    # The run that died had started the rerun of the first execution, and then nothing more.
    with SyncExecutionClient(core_url(core)) as client:
        earlier = client.rerun_execution(failed[0])

    async with ExecutionClient(core_url(core), retry=FAST_RETRY) as client:
        summary = await resume_matching(
            client, workflow_name="orders", on_not_resumed="rerun", resume_check_grace=0
        )

    assert summary.already_rerun == {failed[0]: earlier.rerun_execution_id}
    assert sorted(summary.rerun) == sorted(failed[1:])
    assert core.call_counts()["ExecuteWorkflow"] == 3


@pytest.mark.apis("http")
async def test_bulk_never_reruns_a_rerun_that_failed_too(core_factory):
    core = released_core(core_factory)
    failed = seed_failed(core, 2)
    # From now on every execution ExecuteWorkflow starts fails at "ship": the reruns fail as well.
    core.define_workflow("orders", ORDER_STEPS, fail_at="ship")

    async with ExecutionClient(core_url(core), retry=FAST_RETRY) as client:
        first = await resume_matching(
            client, workflow_name="orders", on_not_resumed="rerun", resume_check_grace=0
        )
        for rerun_execution_id in first.rerun.values():
            core.run_until_settled(rerun_execution_id)
        second = await resume_matching(
            client, workflow_name="orders", on_not_resumed="rerun", resume_check_grace=0
        )

    assert sorted(first.rerun) == sorted(failed)
    assert second.matched == 4 and second.already_rerun == first.rerun and second.rerun == {}
    assert sorted(second.errors) == sorted(first.rerun.values())
    assert all("is itself a rerun" in message for message in second.errors.values())
    assert core.call_counts()["ExecuteWorkflow"] == 2


@pytest.mark.apis("http")
async def test_bulk_dry_run_says_which_would_be_rerun_and_starts_nothing(core_factory):
    core = released_core(core_factory)
    failed = seed_failed(core, 3)
    with SyncExecutionClient(core_url(core)) as client:
        client.rerun_execution(failed[0])

    async with ExecutionClient(core_url(core), retry=FAST_RETRY) as client:
        summary = await resume_matching(client, workflow_name="orders", on_not_resumed="rerun", dry_run=True)

    assert sorted(summary.would_resume) == sorted(failed)
    assert sorted(summary.would_rerun) == sorted(failed[1:])
    assert summary.rerun == summary.already_rerun == {}
    assert "would_rerun=2" in summary.describe()
    counts = core.call_counts()
    assert counts["ExecuteWorkflow"] == 1 and "ResumeExecution" not in counts


# The operators ----------------------------------------------------------------------------------




@pytest.fixture
def airflow_core(core_factory, monkeypatch, airflow_db):
    """The released Core's behaviour, live (steps every 50 ms), behind ``cerebelum_default``."""
    core = released_core(core_factory, step_seconds=0.05)
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core))
    return core


@pytest.mark.apis("http")
def test_resume_operator_reruns_and_waits_for_the_rerun(airflow_core, capfd):
    core = airflow_core
    (failed,) = seed_failed(core, 1)

    # Deferred: the task checks the rerun once in the worker, then the trigger follows it.
    _, results = run_dag("cerebelum_rerun_deferrable", {"execution_id": failed})

    state, xcoms, _ = results["resume"]
    assert state == "success"
    result = xcoms["return_value"]
    rerun_execution_id = result["rerun_execution_id"]
    assert result["execution_id"] == failed and result["resume_status"] == "already_running"
    assert result["execution"]["execution_id"] == rerun_execution_id
    assert result["execution"]["status"] == "EXECUTION_COMPLETED"
    assert xcoms["rerun_execution_id"] == rerun_execution_id and xcoms["execution_id"] == failed
    assert core.status(failed).status is ExecutionState.FAILED
    assert core.call_counts()["ExecuteWorkflow"] == 1
    output = output_of(capfd)
    assert (
        f"Cerebelum execution {failed} was not resumed; its rerun {rerun_execution_id} was started" in output
    )
    assert "every step runs again, completed ones included" in output


@pytest.mark.apis("http")
def test_a_second_resume_run_finds_the_rerun_and_starts_none(airflow_core, capfd):
    core = airflow_core
    (failed,) = seed_failed(core, 1)

    _, first = run_dag("cerebelum_rerun_no_wait", {"execution_id": failed})
    _, second = run_dag("cerebelum_rerun_no_wait", {"execution_id": failed})

    assert first["resume"][0] == second["resume"][0] == "success"
    rerun_execution_id = first["resume"][1]["return_value"]["rerun_execution_id"]
    assert second["resume"][1]["return_value"]["rerun_execution_id"] == rerun_execution_id
    assert core.call_counts()["ExecuteWorkflow"] == 1
    assert f"its rerun {rerun_execution_id} was found (an earlier run started it" in output_of(capfd)


@pytest.mark.apis("grpc")
def test_resume_operator_over_grpc_fails_naming_api_http_and_sends_nothing(airflow_core, capfd):
    core = airflow_core
    (failed,) = seed_failed(core, 1)

    _, results = run_dag("cerebelum_rerun_no_wait", {"execution_id": failed})

    state, _, try_number = results["resume"]
    assert state == "failed" and try_number == 1
    assert "on_not_resumed='rerun' needs Core's HTTP API" in output_of(capfd)
    assert core.call_counts() == {}


@pytest.mark.apis("http")
def test_bulk_operator_reruns_once_logs_each_and_a_dry_run_starts_nothing(airflow_core, capfd):
    core = airflow_core
    failed = seed_failed(core, 3)

    _, dry = run_dag("cerebelum_bulk_rerun", {"plan_only": True})
    assert core.call_counts().get("ExecuteWorkflow", 0) == 0
    _, first = run_dag("cerebelum_bulk_rerun")
    _, second = run_dag("cerebelum_bulk_rerun")

    assert sorted(dry["bulk_resume"][1]["return_value"]["would_rerun"]) == sorted(failed)
    state, xcoms, _ = first["bulk_resume"]
    assert state == "success"
    reruns = xcoms["return_value"]["rerun"]
    assert sorted(reruns) == sorted(failed) and xcoms["return_value"]["resumed"] == []
    assert second["bulk_resume"][0] == "success"
    assert second["bulk_resume"][1]["return_value"]["already_rerun"] == reruns
    assert second["bulk_resume"][1]["return_value"]["rerun"] == {}
    assert core.call_counts()["ExecuteWorkflow"] == 3
    output = output_of(capfd)
    for execution_id, rerun_execution_id in reruns.items():
        assert (
            f"Cerebelum execution {execution_id} was not resumed; its rerun {rerun_execution_id} was started"
            in (output)
        )
    assert "rerun=3, already_rerun=0" in output and "rerun=0, already_rerun=3" in output


@pytest.mark.apis("http")
def test_execute_retry_reruns_once_and_never_reruns_the_rerun(airflow_core, capfd):
    core = airflow_core
    # Every execution ExecuteWorkflow starts fails at "ship": the first try's and its rerun alike.
    core.define_workflow("orders", ORDER_STEPS, fail_at="ship")

    _, results = run_dag("cerebelum_execute_retry_reruns")

    state, _, try_number = results["execute"]
    assert state == "failed" and try_number == 3
    original, rerun = sorted(
        core.execution_ids(), key=lambda execution_id: RERUN_OF_INPUT in started_inputs(core, execution_id)
    )
    assert started_inputs(core, rerun)[RERUN_OF_INPUT] == original
    # The task-instance identity travels with the inputs: a later retry finds the rerun.
    assert (
        started_inputs(core, rerun)["_airflow_correlation_id"]
        == started_inputs(core, original)["_airflow_correlation_id"]
    )
    assert core.call_counts()["ExecuteWorkflow"] == 2
    output = output_of(capfd)
    assert f"its rerun {rerun} was started" in output
    # The third try starts nothing: on Airflow 3.3 it reads the rerun's id from the task state store
    # and refuses to rerun a rerun; on 3.2 it finds the try's executions in Core (id order) and,
    # taking the original first, finds its rerun instead of starting one.
    assert (
        f"{rerun} is itself a rerun (of {original}) and is not rerun again" in output
        or f"its rerun {rerun} was found (an earlier run started it" in output
    )


@pytest.mark.parametrize(
    "operator_class, kwargs",
    [
        (CerebelumResumeExecutionOperator, {"execution_id": "e-1"}),
        (CerebelumBulkResumeOperator, {"workflow_name": "orders"}),
        (CerebelumExecuteWorkflowOperator, {"workflow_name": "orders"}),
    ],
)
@pytest.mark.parametrize("value", ["restart", "RERUN", None, True])
def test_a_bad_on_not_resumed_is_refused_naming_the_value_and_the_choices(operator_class, kwargs, value):
    with pytest.raises(ValueError, match=rf"on_not_resumed must be one of 'fail', 'rerun', got {value!r}"):
        operator_class(task_id="t", on_not_resumed=value, **kwargs)


async def test_the_bulk_engine_refuses_a_bad_on_not_resumed_before_any_call(core):
    async with ExecutionClient(core_url(core)) as client:
        with pytest.raises(ValueError, match="on_not_resumed must be one of 'fail', 'rerun', got 'yes'"):
            await resume_matching(client, on_not_resumed="yes")
    assert core.call_counts() == {}
