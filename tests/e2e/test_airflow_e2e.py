"""The provider in a real Airflow: scheduler, dag-processor, triggerer and api-server processes.

``dag.test()`` runs everything in one process; only here does a real scheduler hand a deferred
sensor to a real triggerer process, and the api-server draw the connection form from the
provider info and run the connection test through the hook.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter

import pytest

from cerebelum_provider import ExecutionState, SyncExecutionClient
from cerebelum_provider.get_provider_info import CONNECTION_FIELDS

from .conftest import (
    APPROVAL_EXECUTIONS,
    HELD_EXECUTION,
    NIGHTLY_FAILED,
    NIGHTLY_WORKFLOW,
    SLOW_WORKFLOW,
    UI_URL,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRIGGER_CLASSPATH = "cerebelum_provider.triggers.cerebelum.CerebelumExecutionTrigger"


def resume_counts(core_db) -> Counter:
    """How many times the emulator resumed each execution, read from its event log file."""
    with sqlite3.connect(f"file:{core_db}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT execution_id FROM events WHERE type = 'execution_resumed'").fetchall()
    return Counter(execution_id for (execution_id,) in rows)


EXAMPLE_DAG_IDS = (
    "example_cerebelum_wait",
    "example_cerebelum_execute",
    "example_cerebelum_resume",
    "example_cerebelum_bulk_resume",
    "example_cerebelum_bulk_resume_mapped",
    "example_cerebelum_approval",
    "example_cerebelum_event_resume",
)


def test_the_dag_processor_parses_every_example_dag_without_import_errors(airflow):
    airflow.wait_for_dags(EXAMPLE_DAG_IDS)

    assert airflow.request("GET", "/api/v2/importErrors")["import_errors"] == []
    dags = airflow.request("GET", "/api/v2/dags", params={"tags": "example", "limit": 100})["dags"]
    assert sorted(dag["dag_id"] for dag in dags) == sorted(EXAMPLE_DAG_IDS)


def test_hook_meta_lists_cerebelum_with_its_extra_fields(airflow):
    hooks = airflow.request("GET", "/ui/connections/hook_meta")
    cerebelum = [hook for hook in hooks if hook["connection_type"] == "cerebelum"]

    assert len(cerebelum) == 1
    assert cerebelum[0]["hook_name"] == "Cerebelum Core"
    extra_fields = cerebelum[0]["extra_fields"]
    assert set(extra_fields) == set(CONNECTION_FIELDS)
    for name, field in CONNECTION_FIELDS.items():
        assert extra_fields[name]["schema"]["title"] == field["label"]
        assert extra_fields[name]["description"] == field["description"]
    standard = cerebelum[0]["standard_fields"]
    assert standard["password"]["title"] == "Bearer token"
    assert standard["login"]["hidden"] is True


def test_connection_test_with_host_and_port_only_speaks_http_and_reads_a_status(airflow, emulator):
    with SyncExecutionClient(emulator.address) as client:
        execution_id = client.execute_workflow(SLOW_WORKFLOW, {"from": "connection test"}).execution_id
    body = {"connection_id": "e2e_probe", "conn_type": "cerebelum", "host": "127.0.0.1", "port": emulator.http_port}

    answer = airflow.request("POST", "/api/v2/connections/test", json=body)

    assert answer["status"] is True, answer
    assert f"Connected to Cerebelum Core at {emulator.http_url} over HTTP" in answer["message"]
    assert execution_id and "the status of" in answer["message"]


def test_connection_test_at_the_grpc_port_without_api_names_the_setting(airflow, emulator):
    host, port = emulator.address.rsplit(":", 1)
    body = {"connection_id": "e2e_grpc_port", "conn_type": "cerebelum", "host": host, "port": int(port)}

    answer = airflow.request("POST", "/api/v2/connections/test", json=body)

    assert answer["status"] is False
    assert f"answers the other API at port {port}: set Core API to grpc (api=grpc)" in answer["message"]
    body["extra"] = json.dumps({"api": "grpc"})
    assert airflow.request("POST", "/api/v2/connections/test", json=body)["status"] is True


def test_connection_test_answers_false_with_the_address_for_a_closed_port(airflow):
    from airflow_stack import closed_port

    port = closed_port()
    body = {"connection_id": "e2e_closed", "conn_type": "cerebelum", "host": "127.0.0.1", "port": port}

    answer = airflow.request("POST", "/api/v2/connections/test", json=body)

    assert answer["status"] is False
    assert f"127.0.0.1:{port}" in answer["message"]
    assert "CoreUnavailableError" in answer["message"]


def jobs_by_id(airflow) -> dict[int, tuple[str, str]]:
    """Every job of the stack's metadata database: id -> (job_type, state)."""
    database = sqlite3.connect(f"file:{airflow.home / 'airflow.db'}?mode=ro", uri=True)
    try:
        rows = database.execute("SELECT id, job_type, state FROM job").fetchall()
    finally:
        database.close()
    return {job_id: (job_type, state) for job_id, job_type, state in rows}


def test_deferrable_sensor_is_handed_to_the_triggerer_process_and_succeeds(airflow, emulator):
    # Waiting for approval at its second step until the task has been seen deferred (below).
    execution_id = HELD_EXECUTION
    airflow.wait_for_dags(["example_cerebelum_wait"])

    run_id = airflow.trigger_dag("example_cerebelum_wait", conf={"execution_id": execution_id})
    links_while_deferred: list[dict] = []

    def read_the_link_while_deferred(change) -> None:
        if change.task_id == "wait_for_execution" and change.state == "deferred":
            path = f"/api/v2/dags/example_cerebelum_wait/dagRuns/{run_id}/taskInstances/wait_for_execution/links"
            # The worker reports the deferral first and stores the task's links just after (seen as
            # a link of None on a loaded machine): read again for a few seconds of the 12 s wait.
            for _ in range(20):
                links = airflow.request("GET", path)["extra_links"]
                if any(links.values()):
                    break
                time.sleep(0.25)
            links_while_deferred.append(links)
            # Seen deferred: the execution may go on (its approval goes over Core's HTTP API).
            with SyncExecutionClient(f"http://127.0.0.1:{emulator.http_port}") as client:
                assert client.approve_execution(execution_id) == "approved"

    result = airflow.wait_for_run(
        "example_cerebelum_wait", run_id, timeout=120, on_change=read_the_link_while_deferred
    )

    # The api-server shows the "Cerebelum execution" link while the task is deferred.
    assert links_while_deferred == [{"Cerebelum execution": UI_URL.format(execution_id=execution_id)}]
    states = result.task_states["wait_for_execution"]
    assert result.state == "success", states
    assert "deferred" in states and states[-1] == "success", states
    deferred = [ti for ti in result.snapshots["wait_for_execution"] if ti["state"] == "deferred"]
    assert deferred[0]["trigger"]["classpath"] == TRIGGER_CLASSPATH
    # Airflow writes a trigger's log next to the task's, one file per triggerer job that ran it.
    run_logs = airflow.home / "logs" / "dag_id=example_cerebelum_wait" / f"run_id={run_id}"
    task_logs = run_logs / "task_id=wait_for_execution"
    trigger_logs = sorted(task_logs.glob("attempt=1.log.trigger.*.log"))
    assert len(trigger_logs) == 1
    triggerer_job_id = int(trigger_logs[0].name.split(".")[-2])
    # That job is the running `airflow triggerer` process: the only triggerer this stack's fresh
    # metadata database has seen is the one the stack started...
    jobs = jobs_by_id(airflow)
    assert jobs[triggerer_job_id] == ("TriggererJob", "running")
    assert [job_type for job_type, _ in jobs.values()].count("TriggererJob") == 1
    assert airflow.processes["triggerer"].alive()
    # ...and it ran our trigger (its own log lines) until the trigger fired one success event.
    events = [json.loads(line) for line in trigger_logs[0].read_text().splitlines() if line.startswith("{")]
    fired = [event for event in events if event["event"] == "Trigger fired event"]
    assert len(fired) == 1 and "'status': 'success'" in fired[0]["result"]
    assert any(event.get("logger", "").startswith(TRIGGER_CLASSPATH) for event in events)

    final = airflow.xcom("example_cerebelum_wait", run_id, "wait_for_execution")
    assert final["execution_id"] == execution_id
    assert ExecutionState.coerce(final["status"]) is ExecutionState.COMPLETED
    assert final["current_step_index"] == final["total_steps"] == 12


def test_bulk_resume_dag_resumes_every_failed_execution_of_its_workflow_exactly_once(airflow, emulator):
    with SyncExecutionClient(emulator.address) as client:
        failed = {e.execution_id for e in client.iter_executions(NIGHTLY_WORKFLOW, ExecutionState.FAILED)}
        everything = {e.execution_id for e in client.iter_executions(NIGHTLY_WORKFLOW)}
    assert len(failed) == NIGHTLY_FAILED and len(everything) == NIGHTLY_FAILED + 1
    airflow.wait_for_dags(["example_cerebelum_bulk_resume"])

    run_id = airflow.trigger_dag("example_cerebelum_bulk_resume", conf={"workflow_name": NIGHTLY_WORKFLOW})
    result = airflow.wait_for_run("example_cerebelum_bulk_resume", run_id, timeout=120)

    assert result.state == "success", result.task_states
    summary = airflow.xcom("example_cerebelum_bulk_resume", run_id, "resume_failed_executions")
    assert summary["matched"] == NIGHTLY_FAILED
    assert sorted(summary["resumed"]) == sorted(failed)
    assert (summary["already_running"], summary["failed_to_resume"], summary["errors"]) == ([], [], {})
    counts = resume_counts(emulator.db_path)
    assert {execution_id: counts[execution_id] for execution_id in everything} == {
        execution_id: int(execution_id in failed) for execution_id in everything
    }
    with SyncExecutionClient(emulator.address) as client:
        assert not list(client.iter_executions(NIGHTLY_WORKFLOW, ExecutionState.FAILED))


def _approval_run(airflow, emulator, execution_id: str, answer: dict) -> tuple[object, list[dict]]:
    """Run e2e_approval on ``execution_id``; when its task parks, answer as a person does in the
    Required Actions page (the public API's PATCH .../hitlDetails). Returns the run and what the
    person was shown."""
    from tests.e2e.dags.e2e_approval import APPROVAL_CONNECTION_ID

    connection = {
        "connection_id": APPROVAL_CONNECTION_ID,
        "conn_type": "cerebelum",
        "host": "127.0.0.1",
        "port": emulator.http_port,
    }
    airflow.request("POST", "/api/v2/connections", json=connection, expect=(201, 409))
    airflow.wait_for_dags(["e2e_approval"])
    run_id = airflow.trigger_dag("e2e_approval", conf={"execution_id": execution_id})
    shown: list[dict] = []

    def answer_when_asked(change) -> None:
        if change.task_id == "approve" and change.state == "awaiting_input":
            shown.append(airflow.answer_hitl("e2e_approval", run_id, "approve", answer))

    result = airflow.wait_for_run("e2e_approval", run_id, timeout=180, on_change=answer_when_asked)
    return result, shown


def _approval_events(emulator, execution_id: str) -> list[dict]:
    with SyncExecutionClient(emulator.http_url) as client:
        return client.get_execution_events(execution_id)


def test_a_persons_approve_in_required_actions_completes_the_execution_with_their_input(airflow, emulator):
    execution_id = APPROVAL_EXECUTIONS["approve"]

    result, shown = _approval_run(
        airflow, emulator, execution_id, {"chosen_options": ["Approve"], "params_input": {"note": "ship it"}}
    )

    assert result.state == "success", result.task_states
    assert result.task_states["approve"][-1] == "success"
    # The person saw Core's request: the step it waits on and what it asks.
    (detail,) = shown
    assert detail["subject"] == f"Approve Cerebelum execution {execution_id} at step charge?"
    assert "at step **charge**" in detail["body"] and "Core's timeout" in detail["body"]
    assert detail["options"] == ["Approve", "Reject"]
    # Core got the person's input as the waiting step's inputs, and the execution completed.
    events = _approval_events(emulator, execution_id)
    received = [event["data"] for event in events if event["type"] == "ApprovalReceivedEvent"]
    assert [data["approval_response"] for data in received] == [{"note": "ship it"}]
    final = airflow.xcom("e2e_approval", result.run_id, "approve")
    assert final["response"] == {"note": "ship it"}
    assert ExecutionState.coerce(final["execution"]["status"]) is ExecutionState.COMPLETED


def test_a_persons_reject_stops_the_execution_and_fails_the_task(airflow, emulator):
    execution_id = APPROVAL_EXECUTIONS["reject"]

    result, shown = _approval_run(airflow, emulator, execution_id, {"chosen_options": ["Reject"]})

    assert result.state == "failed", result.task_states
    assert result.task_states["approve"][-1] == "failed" and len(shown) == 1
    events = _approval_events(emulator, execution_id)
    assert "ApprovalReceivedEvent" not in [event["type"] for event in events]
    with SyncExecutionClient(emulator.http_url) as client:
        # Stopped: Core no longer has it waiting, and refuses to approve it.
        assert client.get_execution_status(execution_id).status is not ExecutionState.WAITING_FOR_APPROVAL
    task_log = airflow.home / "logs" / "dag_id=e2e_approval" / f"run_id={result.run_id}" / "task_id=approve"
    logged = "".join(path.read_text() for path in task_log.glob("attempt=*.log"))
    assert f"Cerebelum execution {execution_id}: approval rejected by" in logged
    assert "the execution was stopped in Core" in logged
