"""The three operators against the emulator, through ``dag.test()`` with a real Airflow and SQLite.

Counts come from the emulator (executions started, resumes answered), never from timings.
"""

from __future__ import annotations

import json

import pytest

from cerebelum_provider.models import ExecutionState
from cerebelum_provider.operators.cerebelum import (
    CerebelumApproveExecutionOperator,
    CORRELATION_INPUT,
    CerebelumBulkResumeOperator,
    CerebelumExecuteWorkflowOperator,
    CerebelumResumeExecutionOperator,
)
from tests.provider._deferral import completed_once_the_trigger_polls, deferred
from tests.core_apis import connection_uri
from tests.dagrun import output_of, run_dag

TOKEN = "operator-test-token-5f1c"
#: Airflow 3.3 gives tasks a task_state_store that survives retries; the execute operator keeps
#: the id of the execution it started there, and falls back to listing Core before 3.3.
HAS_TASK_STATE_STORE = "task_state_store" in __import__(
    "airflow.sdk.definitions.context", fromlist=["Context"]
).Context.__annotations__
WAIT_MODES = ("no_wait", "poll", "deferrable")
ORDER_STEPS = ["validate", "charge", "ship", "notify"]

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def live_core(core_factory, monkeypatch, airflow_db):
    """An emulator moving live executions on every 50 ms, behind ``cerebelum_default`` with a token."""
    emulator = core_factory(step_seconds=0.05, token=TOKEN)
    emulator.define_workflow("orders", ORDER_STEPS)
    uri = connection_uri(emulator, token=TOKEN, ui_url="https://core.example/executions/{execution_id}")
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", uri)
    return emulator


@pytest.fixture
def still_core(core_factory, monkeypatch, airflow_db):
    """An emulator whose executions move only when the test says so (manual clock)."""
    emulator = core_factory(token=TOKEN)
    emulator.define_workflow("orders", ORDER_STEPS)
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(emulator, token=TOKEN))
    return emulator


# Resume one execution ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", WAIT_MODES)
@pytest.mark.apis("grpc", "http")  # a gRPC status lists the completed steps, a REST one does not
def test_resume_operator_resumes_a_failed_execution(live_core, mode, capfd, core_api):
    execution_id = live_core.start_execution("orders", fail_at="charge", error_message="card declined")
    live_core.run_until_settled(execution_id)
    assert live_core.status(execution_id).status is ExecutionState.FAILED

    _, results = run_dag(f"cerebelum_resume_{mode}", {"execution_id": execution_id})

    state, xcoms, _ = results["resume"]
    assert state == "success"
    assert live_core.resume_count(execution_id) == 1
    result = xcoms["return_value"]
    assert result["execution_id"] == execution_id and result["resume_status"] == "resumed"
    assert xcoms["execution_id"] == execution_id
    assert xcoms["_link_CerebelumExecutionLink"] == f"https://core.example/executions/{execution_id}"
    if mode == "no_wait":
        assert "execution" not in result
    else:
        assert result["execution"]["status"] == "EXECUTION_COMPLETED"
        assert sorted(result["execution"]["step_outputs"]) == sorted(ORDER_STEPS)
        if core_api == "grpc":  # Core's REST status has no per-step list
            assert [step["step_name"] for step in result["execution"]["completed_steps"]] == ORDER_STEPS
    output = output_of(capfd)
    assert TOKEN not in output and TOKEN not in json.dumps(xcoms)


def test_resume_and_wait_defers_until_the_execution_completes(still_core, caplog):
    execution_id = still_core.start_execution("orders", fail_at=0)
    still_core.run_until_settled(execution_id)

    # Reads: the resume check, the task's one check before deferring, then the trigger's.
    with completed_once_the_trigger_polls(still_core, lambda: execution_id, status_reads=3):
        _, results = run_dag("cerebelum_resume_deferrable", {"execution_id": execution_id})

    state, xcoms, _ = results["resume"]
    assert state == "success" and deferred(caplog)
    assert xcoms["return_value"]["resume_status"] == "resumed"
    assert xcoms["return_value"]["execution"]["status"] == "EXECUTION_COMPLETED"
    assert still_core.resume_count(execution_id) == 1


def test_resume_operator_accepts_already_running(still_core):
    execution_id = still_core.start_execution("orders")

    _, results = run_dag("cerebelum_resume_no_wait", {"execution_id": execution_id})

    state, xcoms, _ = results["resume"]
    assert state == "success"
    assert xcoms["return_value"]["resume_status"] == "already_running"
    assert still_core.resume_count(execution_id) == 0


def test_resume_operator_fails_clearly_when_core_refuses(still_core, capfd):
    _, results = run_dag("cerebelum_resume_no_wait", {"execution_id": "no-such-execution"})

    assert results["resume"][0] == "failed"
    assert "refused to resume execution no-such-execution (failed_to_resume" in output_of(capfd)


def test_resume_operator_succeeds_for_a_completed_execution_saying_so(still_core):
    execution_id = still_core.start_execution("orders")
    still_core.complete(execution_id)

    _, results = run_dag("cerebelum_resume_no_wait", {"execution_id": execution_id})

    state, xcoms, _ = results["resume"]
    assert state == "success"
    assert xcoms["return_value"]["resume_status"] == "already_completed"


@pytest.mark.parametrize("mode", ["poll", "deferrable"])
def test_resume_and_wait_fails_with_cores_error_when_it_fails_again(live_core, mode, capfd):
    execution_id = live_core.start_execution(
        "orders", fail_at="ship", fail_times=2, error_kind="carrier_down", error_message="503 from carrier"
    )
    live_core.run_until_settled(execution_id)

    _, results = run_dag(f"cerebelum_resume_{mode}", {"execution_id": execution_id})

    assert results["resume"][0] == "failed"
    assert live_core.resume_count(execution_id) == 1
    # It fails again within the resume check's grace, and reads FAILED like an execution Core
    # did not resume: the check fails the task, with Core's error of the new failure.
    output = output_of(capfd)
    assert f"Cerebelum Core answered 'resumed' for execution {execution_id} but it is still FAILED" in output
    assert "or it failed again within that time; Core's error: carrier_down: 503 from carrier" in output


@pytest.mark.waits
def test_resume_operator_retries_transient_errors(still_core):
    import grpc

    execution_id = still_core.start_execution("orders", fail_at=0)
    still_core.run_until_settled(execution_id)
    # Fewer failures than the connection's one budget of 5 attempts.
    still_core.fail_next(4, code=grpc.StatusCode.UNAVAILABLE, rpcs="ResumeExecution")

    _, results = run_dag("cerebelum_resume_no_wait", {"execution_id": execution_id})

    assert results["resume"][0] == "success"
    assert still_core.resume_count(execution_id) == 1
    assert still_core.call_counts()["ResumeExecution"] == 5


# Execute a workflow --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", WAIT_MODES)
@pytest.mark.apis("grpc", "http")  # REST cannot send tags: the operator says so
def test_execute_operator_starts_once_and_returns_the_execution(live_core, mode, capfd, core_api):
    _, results = run_dag(f"cerebelum_execute_{mode}", {"workflow_name": "orders", "inputs": {"order_id": 42}})

    state, xcoms, _ = results["execute"]
    assert state == "success"
    assert live_core.call_counts()["ExecuteWorkflow"] == 1
    execution_id = xcoms["execution_id"]
    assert live_core.execution_ids() == [execution_id]
    execution = xcoms["return_value"]
    assert execution["execution_id"] == execution_id
    # What Core received (its REST status does not echo inputs, so read them from Core itself).
    inputs = live_core.status(execution_id).inputs
    assert inputs["order_id"] == 42
    assert inputs[CORRELATION_INPUT].startswith("airflow:cerebelum_execute_")
    assert inputs[CORRELATION_INPUT].endswith(":execute:-1")
    if mode != "no_wait":
        assert execution["status"] == "EXECUTION_COMPLETED"
    assert xcoms["_link_CerebelumExecutionLink"] == f"https://core.example/executions/{execution_id}"
    output = output_of(capfd)
    assert TOKEN not in output
    # The test DAG sets tags, which only gRPC carries: over REST the log says they were not sent.
    assert ("tags not sent: Core's HTTP API" in output) is (core_api == "http")


def test_execute_and_wait_defers_until_the_execution_completes(still_core, caplog):
    with completed_once_the_trigger_polls(still_core, lambda: still_core.execution_ids()[0], status_reads=2):
        _, results = run_dag("cerebelum_execute_deferrable", {"workflow_name": "orders"})

    state, xcoms, _ = results["execute"]
    assert state == "success" and deferred(caplog)
    (execution_id,) = still_core.execution_ids()
    assert xcoms["execution_id"] == execution_id
    assert xcoms["return_value"]["status"] == "EXECUTION_COMPLETED"
    assert still_core.call_counts()["ExecuteWorkflow"] == 1


def test_execute_operator_fails_when_the_execution_fails(core_factory, monkeypatch, airflow_db, capfd):
    # A workflow Core has no blueprint for: Core answers status "failed" and no execution starts.
    emulator = core_factory(accept_any_workflow=False)
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(emulator))

    _, results = run_dag("cerebelum_execute_poll", {"workflow_name": "no-such-workflow"})

    assert results["execute"][0] == "failed"
    assert "WorkflowStartError" in output_of(capfd)
    assert emulator.execution_ids() == []


@pytest.mark.parametrize("crash", ["CrashAfterStart", "CrashBeforeStoring"])
def test_execute_retry_reattaches_instead_of_starting_again(still_core, crash, capfd):
    import threading

    # The execution stays RUNNING until the second try polls it (manual clock), so it is alive
    # when the retry looks for it; then the test completes it and the retry's wait ends.
    # CrashAfterStart's retry reads the execution once to decide, then polls; CrashBeforeStoring's
    # retry finds it by listing and goes straight to polling.
    polls_before_completing = 2 if crash == "CrashAfterStart" else 1
    stop = threading.Event()

    def complete_once_polled() -> None:
        while not stop.wait(0.02):
            if still_core.call_counts().get("GetExecutionStatus", 0) >= polls_before_completing:
                still_core.complete(still_core.execution_ids()[0])
                return

    helper = threading.Thread(target=complete_once_polled, daemon=True)
    helper.start()
    try:
        _, results = run_dag(f"cerebelum_execute_{crash}")
    finally:
        stop.set()
        helper.join()

    state, xcoms, try_number = results["execute"]
    assert "simulated worker crash after starting" in output_of(capfd)
    assert still_core.call_counts()["ExecuteWorkflow"] == 1
    (execution_id,) = still_core.execution_ids()
    assert state == "success" and try_number == 2
    assert xcoms["execution_id"] == execution_id
    assert xcoms["return_value"]["execution_id"] == execution_id
    assert xcoms["return_value"]["status"] == "EXECUTION_COMPLETED"
    if crash == "CrashBeforeStoring" or not HAS_TASK_STATE_STORE:
        # No stored id (lost before storing, or Airflow 3.2 has no task_state_store): found by listing.
        assert still_core.call_counts()["ListExecutions"] >= 1
    else:
        assert "ListExecutions" not in still_core.call_counts()


def test_execute_retry_with_restart_starts_again_when_the_earlier_execution_is_over(still_core):
    import threading

    # on_retry="restart": the first try's execution completes before the retry looks at it, so the
    # retry starts a fresh one; that one completes once it is polled.
    stop = threading.Event()

    def complete_executions() -> None:
        while not stop.wait(0.02):
            ids = still_core.execution_ids()
            if len(ids) == 1 and still_core.status(ids[0]).status is ExecutionState.RUNNING:
                still_core.complete(ids[0])
            # One status read decided about the first execution; the next one polls the second.
            if len(ids) == 2 and still_core.call_counts().get("GetExecutionStatus", 0) >= 2:
                still_core.complete(ids[1])
                return

    helper = threading.Thread(target=complete_executions, daemon=True)
    helper.start()
    try:
        _, results = run_dag("cerebelum_execute_restart_CrashAfterStart")
    finally:
        stop.set()
        helper.join()

    state, xcoms, try_number = results["execute"]
    assert state == "success" and try_number == 2
    assert still_core.call_counts()["ExecuteWorkflow"] == 2
    _first, second = still_core.execution_ids()
    assert xcoms["return_value"]["execution_id"] == xcoms["execution_id"] == second
    assert xcoms["return_value"]["status"] == "EXECUTION_COMPLETED"


@pytest.mark.parametrize("mode", ["poll", "deferrable"])
def test_execute_wait_times_out_with_a_clear_message(still_core, mode, capfd):
    _, results = run_dag(f"cerebelum_execute_timeout_{mode}")

    assert results["execute"][0] == "failed"
    (execution_id,) = still_core.execution_ids()
    output = output_of(capfd)
    # The worker knows its limit in seconds; the trigger only the deadline: both name the last state.
    assert f"Cerebelum execution {execution_id} did not finish" in output
    assert "it is still RUNNING" in output
    assert still_core.call_counts()["ExecuteWorkflow"] == 1


@pytest.mark.parametrize("dag_id", ["cerebelum_resume_no_wait", "cerebelum_bulk_resume"])
def test_a_wrong_token_fails_without_retrying_or_leaking(
    core_factory, monkeypatch, airflow_db, dag_id, capfd
):
    emulator = core_factory(token=TOKEN)
    execution_id = emulator.start_execution("orders", fail_at=0)
    emulator.run_until_settled()
    wrong = "wrong-token-9d2e"
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(emulator, token=wrong))

    _, results = run_dag(dag_id, {"execution_id": execution_id, "workflow_name": "orders"})

    (task_id,) = results
    assert results[task_id][0] == "failed"
    output = output_of(capfd)
    assert "AirflowFailException" in output and "check the token" in output
    assert wrong not in output and TOKEN not in output
    assert emulator.resume_count(execution_id) == 0
    # Exactly one call reached the proxy check: an auth refusal is never retried.
    assert sum(emulator.call_counts().values()) == 1


# Bulk resume -------------------------------------------------------------------------------


def _seed_failed(core, count: int, workflow: str) -> list[str]:
    ids = [core.start_execution(workflow, fail_at=0) for _ in range(count)]
    core.run_until_settled()
    return ids


def test_bulk_operator_resumes_every_failed_execution_once(still_core, capfd):
    orders = _seed_failed(still_core, 130, "orders")
    billing = _seed_failed(still_core, 5, "billing")

    _, results = run_dag("cerebelum_bulk_resume", {"workflow_name": "orders"})

    state, xcoms, _ = results["bulk_resume"]
    assert state == "success"
    summary = xcoms["return_value"]
    assert summary["matched"] == 130 and sorted(summary["resumed"]) == sorted(orders)
    assert summary["errors"] == {} and summary["failed_to_resume"] == [] and summary["dry_run"] is False
    assert [still_core.resume_count(execution_id) for execution_id in orders] == [1] * 130
    assert [still_core.resume_count(execution_id) for execution_id in billing] == [0] * 5
    output = output_of(capfd)
    assert "matched=130, resumed=130, already_running=0, failed_to_resume=0, errors=0" in output
    assert TOKEN not in output


def test_bulk_operator_logs_progress_counts_while_it_runs(still_core, capfd):
    _seed_failed(still_core, 6, "orders")

    _, results = run_dag("cerebelum_bulk_resume_chatty")

    assert results["bulk_resume"][0] == "success"
    output = output_of(capfd)
    lines = [line for line in output.splitlines() if "Bulk resume progress: matched=" in line]
    # A line for each batch of checks answered together (one listing, or a wave of reads: how many
    # batches depends on timing), then the final counts: at least one line before the end.
    assert len(lines) >= 2
    assert "resumed=6, already_running=0, failed_to_resume=0, errors=0" in lines[-1]


def test_bulk_operator_plan_only_from_conf_resumes_nothing(still_core):
    orders = _seed_failed(still_core, 12, "orders")

    _, results = run_dag("cerebelum_bulk_resume", {"workflow_name": "orders", "plan_only": True})

    state, xcoms, _ = results["bulk_resume"]
    assert state == "success"
    assert sorted(xcoms["return_value"]["would_resume"]) == sorted(orders)
    assert "ResumeExecution" not in still_core.call_counts()


def test_bulk_operator_fails_at_the_end_when_something_failed(still_core, capfd):
    import grpc

    orders = _seed_failed(still_core, 20, "orders")
    still_core.fail_next(1, code=grpc.StatusCode.INTERNAL, rpcs="ResumeExecution")

    _, results = run_dag("cerebelum_bulk_resume", {"workflow_name": "orders"})

    state, xcoms, _ = results["bulk_resume"]
    assert state == "failed"
    summary = xcoms["summary"]
    assert len(summary["resumed"]) == 19 and len(summary["errors"]) == 1
    assert sum(still_core.resume_count(execution_id) for execution_id in orders) == 19
    assert "did not resume everything: matched=20, resumed=19" in output_of(capfd)


def test_bulk_operator_mapped_over_workflow_names(still_core):
    orders = _seed_failed(still_core, 30, "orders")
    billing = _seed_failed(still_core, 20, "billing")
    _seed_failed(still_core, 4, "shipping")

    _, results = run_dag("cerebelum_bulk_resume_mapped")

    (_, orders_xcoms, _), (_, billing_xcoms, _) = results[("bulk_resume", 0)], results[("bulk_resume", 1)]
    assert results[("bulk_resume", 0)][0] == results[("bulk_resume", 1)][0] == "success"
    assert sorted(orders_xcoms["return_value"]["resumed"]) == sorted(orders)
    assert sorted(billing_xcoms["return_value"]["resumed"]) == sorted(billing)
    assert still_core.call_counts()["ResumeExecution"] == 50
    assert len(still_core.execution_ids(ExecutionState.FAILED)) == 4


# Construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "kwargs", "error", "names"),
    [
        (CerebelumResumeExecutionOperator, {"execution_id": ""}, ValueError, "execution_id"),
        (CerebelumResumeExecutionOperator, {"execution_id": None}, TypeError, "execution_id"),
        (CerebelumResumeExecutionOperator, {"execution_id": 12}, TypeError, "execution_id"),
        (CerebelumResumeExecutionOperator, {"execution_id": "x" * 10_000}, ValueError, "execution_id"),
        (
            CerebelumResumeExecutionOperator,
            {"execution_id": "e", "poll_interval": 0},
            ValueError,
            "poll_interval",
        ),
        (
            CerebelumResumeExecutionOperator,
            {"execution_id": "e", "poll_interval": -1},
            ValueError,
            "poll_interval",
        ),
        (CerebelumResumeExecutionOperator, {"execution_id": "e", "timeout": "10"}, TypeError, "timeout"),
        (
            CerebelumResumeExecutionOperator,
            {"execution_id": "e", "skip_completed_steps": "no"},
            TypeError,
            "skip",
        ),
        (
            CerebelumResumeExecutionOperator,
            {"execution_id": "e", "wait_for_completion": 1},
            TypeError,
            "wait_for",
        ),
        (
            CerebelumResumeExecutionOperator,
            {"execution_id": "e", "cerebelum_conn_id": ""},
            ValueError,
            "conn_id",
        ),
        (CerebelumBulkResumeOperator, {"max_concurrency": 0}, ValueError, "max_concurrency"),
        (CerebelumBulkResumeOperator, {"max_executions": -1}, ValueError, "max_executions"),
        (CerebelumBulkResumeOperator, {"states": ["FAILED", "NOPE"]}, ValueError, "states"),
        (CerebelumBulkResumeOperator, {"states": ()}, ValueError, "states"),
        (CerebelumBulkResumeOperator, {"workflow_name": ""}, ValueError, "workflow_name"),
        (CerebelumBulkResumeOperator, {"plan_only": "yes"}, TypeError, "plan_only"),
        (CerebelumBulkResumeOperator, {"dry_run": True}, TypeError, "renamed plan_only"),
        (CerebelumBulkResumeOperator, {"fail_on_error": None}, TypeError, "fail_on_error"),
        (CerebelumExecuteWorkflowOperator, {"workflow_name": ""}, ValueError, "workflow_name"),
        (CerebelumExecuteWorkflowOperator, {"workflow_name": None}, TypeError, "workflow_name"),
        (CerebelumExecuteWorkflowOperator, {"workflow_name": "w", "inputs": [1]}, TypeError, "inputs"),
        (
            CerebelumExecuteWorkflowOperator,
            {"workflow_name": "w", "inputs": {CORRELATION_INPUT: 1}},
            ValueError,
            "inputs",
        ),
        (CerebelumExecuteWorkflowOperator, {"workflow_name": "w", "tags": "a,b"}, TypeError, "tags"),
        (CerebelumExecuteWorkflowOperator, {"workflow_name": "w", "tags": ["ok", ""]}, ValueError, "tags"),
        (
            CerebelumExecuteWorkflowOperator,
            {"workflow_name": "w", "correlation_id": " "},
            ValueError,
            "correlation_id",
        ),
        (
            CerebelumExecuteWorkflowOperator,
            {"workflow_name": "w", "poll_interval": float("nan")},
            ValueError,
            "poll",
        ),
    ],
)
def test_bad_arguments_are_refused_at_construction(operator, kwargs, error, names):
    with pytest.raises(error, match=names):
        operator(task_id="bad", **kwargs)


def test_templated_fields_and_links():
    execute = CerebelumExecuteWorkflowOperator(
        task_id="e", workflow_name="{{ params.w }}", inputs="{{ params.i }}"
    )
    assert tuple(execute.template_fields) == (
        "workflow_name",
        "inputs",
        "correlation_id",
        "tags",
        "cerebelum_conn_id",
    )
    assert tuple(CerebelumBulkResumeOperator.template_fields) == (
        "workflow_name",
        "plan_only",
        "cerebelum_conn_id",
    )
    # BaseOperator.dry_run() (Airflow's template-rendering preview) is not shadowed by an argument.
    bulk = CerebelumBulkResumeOperator(task_id="b", plan_only=True)
    assert bulk.plan_only is True and callable(bulk.dry_run)
    assert tuple(CerebelumResumeExecutionOperator.template_fields) == ("execution_id", "cerebelum_conn_id")
    for operator in (CerebelumExecuteWorkflowOperator, CerebelumResumeExecutionOperator):
        assert [link.name for link in operator.operator_extra_links] == ["Cerebelum execution"]
    # A bulk run has no one execution to link to.
    assert CerebelumBulkResumeOperator.operator_extra_links == ()


LINK_XCOM_KEY = "_link_CerebelumExecutionLink"
UI_URL = "https://core.example/executions/{execution_id}"


def test_a_retried_execute_task_logs_no_error_for_an_execution_id_not_there_yet(live_core, monkeypatch, capfd):
    # The first try fails before Core started anything (the start is refused once, no client
    # retry): nothing was published, and nothing asks Airflow for it.
    uri = connection_uri(live_core, token=TOKEN, max_attempts=1, ui_url=UI_URL)
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", uri)
    live_core.fail_next(1, rpcs="ExecuteWorkflow")

    _, results = run_dag("cerebelum_execute_retried")

    state, xcoms, try_number = results["execute"]
    assert (state, try_number) == ("success", 2)
    assert "XCom not found" not in output_of(capfd)
    assert xcoms[LINK_XCOM_KEY] == UI_URL.format(execution_id=xcoms["execution_id"])


def test_the_link_is_stored_when_the_task_defers_and_after_it_resumes(still_core, monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(still_core, token=TOKEN, ui_url=UI_URL))
    execution_id = still_core.start_execution("orders", fail_at="charge", error_message="card declined")
    still_core.run_until_settled(execution_id)

    with completed_once_the_trigger_polls(still_core, lambda: execution_id, status_reads=3):
        _, results = run_dag("cerebelum_resume_deferrable", {"execution_id": execution_id})

    state, xcoms, _ = results["resume"]
    assert state == "success" and deferred(caplog)
    assert xcoms[LINK_XCOM_KEY] == UI_URL.format(execution_id=execution_id)


def test_the_connection_id_is_a_template_field_rendered_before_the_hook_is_built(live_core, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CORE_FROM_CONF", connection_uri(live_core, token=TOKEN))
    monkeypatch.delenv("AIRFLOW_CONN_CEREBELUM_DEFAULT")

    _, results = run_dag("cerebelum_execute_templated_connection", {"conn_id": "core_from_conf"})

    state, xcoms, _ = results["execute"]
    assert state == "success"
    assert xcoms["return_value"]["status"] == "EXECUTION_COMPLETED"


def test_every_class_defaults_to_the_one_connection_id_and_builds_its_hook_once():
    from cerebelum_provider._arguments import DEFAULT_CONN_ID
    from cerebelum_provider.hooks.cerebelum import CerebelumHook
    from cerebelum_provider.operators.approval import CerebelumApprovalOperator
    from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor
    from cerebelum_provider.triggers.cerebelum import CerebelumExecutionEventTrigger, CerebelumExecutionTrigger

    built = [
        CerebelumExecuteWorkflowOperator(task_id="e", workflow_name="orders"),
        CerebelumResumeExecutionOperator(task_id="r", execution_id="x"),
        CerebelumBulkResumeOperator(task_id="b"),
        CerebelumApproveExecutionOperator(task_id="a", execution_id="x"),
        CerebelumApprovalOperator(task_id="p", execution_id="x"),
        CerebelumExecutionSensor(task_id="s", execution_id="x"),
        CerebelumExecutionTrigger("x"),
        CerebelumExecutionEventTrigger(workflow_name="orders"),
    ]
    assert CerebelumHook.default_conn_name == DEFAULT_CONN_ID
    assert {thing.cerebelum_conn_id for thing in built} == {DEFAULT_CONN_ID}
    for task in built[:6]:
        assert "cerebelum_conn_id" in task.template_fields
        assert task.hook is task.hook
