"""The example DAGs: they import cleanly, and each runs through ``dag.test()`` against the emulator.

The emulator is seeded with its demo set (the ids the examples default to) and moves live
executions on every 50 ms; the deferrable paths run their trigger in-process, as ``dag.test()``
does.
"""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import pytest

from cerebelum_provider.models import ExecutionState
from tests.core_apis import connection_uri
from tests.provider._deferral import completed_once_the_trigger_polls, deferred
from tests.provider._hitl import HITL_GROUP

EXAMPLE_DAGS = Path(__file__).parents[2] / "example_dags"
EXAMPLE_DAG_IDS = {
    "example_cerebelum_wait",
    "example_cerebelum_execute",
    "example_cerebelum_resume",
    "example_cerebelum_bulk_resume",
    "example_cerebelum_approval",
    "example_cerebelum_event_resume",
    "example_cerebelum_bulk_resume_mapped",
}

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def example_dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    # Earlier tests in this process may leave garbage (a client's socket in a reference cycle) whose
    # ResourceWarning a collection during the parse would record here: collect it first. A fresh
    # clone's run failed so once, on an "unclosed <socket ...>" to an emulator of another test.
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dagbag = DagBag(dag_folder=EXAMPLE_DAGS, bundle_path=EXAMPLE_DAGS, bundle_name="example-dags")
    return dagbag, caught


@pytest.fixture
def demo_core(core_factory, monkeypatch, airflow_db):
    emulator = core_factory(demo=True, step_seconds=0.05)
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(emulator))
    return emulator


@pytest.fixture
def still_demo_core(core_factory, monkeypatch, airflow_db):
    """The demo set on a manual clock: executions move only when the test says so."""
    emulator = core_factory(demo=True)
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(emulator))
    return emulator


def test_example_dags_import_without_errors_or_warnings(example_dagbag):
    dagbag, caught = example_dagbag
    assert dagbag.import_errors == {}
    assert [str(warning.message) for warning in caught] == []
    assert set(dagbag.dag_ids) == EXAMPLE_DAG_IDS
    for dag_id in EXAMPLE_DAG_IDS:
        dag = dagbag.get_dag(dag_id)
        assert dag.doc_md or dag.description, dag_id
        assert "cerebelum" in dag.tags


def test_every_example_file_has_a_user_docstring():
    import ast

    for path in sorted(EXAMPLE_DAGS.glob("example_cerebelum_*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring and "cerebelum_default" in docstring, path.name


def run_example(example_dagbag, dag_id: str, conf: dict | None = None):
    """Run an example DAG; return {task_id or (task_id, map_index): (state, return_value)}."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    run = example_dagbag[0].get_dag(dag_id).test(run_conf=conf)
    results = {}
    with create_session() as session:
        for ti in run.get_task_instances():
            row = (
                session.query(XComModel)
                .filter_by(
                    dag_id=run.dag_id,
                    run_id=run.run_id,
                    task_id=ti.task_id,
                    map_index=ti.map_index,
                    key="return_value",
                )
                .one_or_none()
            )
            key = ti.task_id if ti.map_index < 0 else (ti.task_id, ti.map_index)
            results[key] = (ti.state, row.value if row is not None else None)
    return results


def test_wait_example_defers_until_the_demo_execution_completes(example_dagbag, still_demo_core, caplog):
    with completed_once_the_trigger_polls(still_demo_core, lambda: "demo-orders-running", status_reads=2):
        results = run_example(example_dagbag, "example_cerebelum_wait")

    state, execution = results["wait_for_execution"]
    assert state == "success"
    assert deferred(caplog)
    assert execution["execution_id"] == "demo-orders-running"
    assert execution["status"] == "EXECUTION_COMPLETED"


@pytest.mark.apis("grpc", "http")  # a REST status names neither the workflow nor the inputs
def test_execute_example_starts_one_workflow_and_reports_it(example_dagbag, still_demo_core, caplog, core_api):
    core = still_demo_core
    before = set(core.execution_ids())

    def new_execution() -> str:
        return core.execution_ids()[-1]

    with completed_once_the_trigger_polls(core, new_execution, status_reads=2):
        results = run_example(
            example_dagbag,
            "example_cerebelum_execute",
            {"workflow_name": "billing", "inputs": {"invoice": "INV-9"}},
        )

    (new_id,) = set(core.execution_ids()) - before
    state, execution = results["run_workflow"]
    assert state == "success"
    assert deferred(caplog)
    assert execution["execution_id"] == new_id
    if core_api == "grpc":  # Core's REST status names neither the workflow nor the inputs
        assert execution["workflow_name"] == "billing" and execution["inputs"]["invoice"] == "INV-9"
    assert core.status(new_id).inputs["invoice"] == "INV-9"
    assert execution["status"] == "EXECUTION_COMPLETED"
    assert results["report"] == (
        "success",
        f"execution {new_id} is EXECUTION_COMPLETED after steps: invoice, collect, reconcile",
    )
    assert core.call_counts()["ExecuteWorkflow"] == 1


@pytest.mark.waits
def test_execute_example_retry_resumes_and_runs_each_step_once(example_dagbag, demo_core):
    steps = ["invoice", "collect", "reconcile"]
    demo_core.define_workflow("billing", steps, fail_at="reconcile", fail_times=1)

    results = run_example(
        example_dagbag, "example_cerebelum_execute", {"workflow_name": "billing", "inputs": {"invoice": "INV-7"}}
    )

    state, execution = results["run_workflow"]
    assert state == "success"
    assert demo_core.call_counts()["ExecuteWorkflow"] == 1
    assert demo_core.call_counts()["ResumeExecution"] >= 1
    # Each completed step ran once; the one that failed ran again on the resume.
    assert demo_core.step_runs(execution["execution_id"]) == {"invoice": 1, "collect": 1, "reconcile": 2}


def test_resume_example_resumes_the_demo_failure_and_waits(example_dagbag, still_demo_core, caplog):
    core = still_demo_core
    # The resume check reads the execution once more before the wait begins.
    with completed_once_the_trigger_polls(core, lambda: "demo-orders-failed", status_reads=3):
        results = run_example(example_dagbag, "example_cerebelum_resume")

    state, result = results["resume_execution"]
    assert state == "success"
    assert deferred(caplog)
    assert result["resume_status"] == "resumed"
    assert result["execution"]["status"] == "EXECUTION_COMPLETED"
    assert core.resume_count("demo-orders-failed") == 1


def test_bulk_resume_example_resumes_the_failed_executions_of_one_workflow(example_dagbag, demo_core):
    extra = [demo_core.start_execution("orders", fail_at=1) for _ in range(3)]
    demo_core.run_until_settled()

    results = run_example(example_dagbag, "example_cerebelum_bulk_resume")

    state, summary = results["resume_failed_executions"]
    assert state == "success"
    assert sorted(summary["resumed"]) == sorted(["demo-orders-failed", *extra])
    assert demo_core.resume_count("demo-billing-failed") == 0


def test_bulk_resume_example_plan_only_from_conf(example_dagbag, demo_core):
    results = run_example(
        example_dagbag, "example_cerebelum_bulk_resume", {"workflow_name": "billing", "plan_only": True}
    )

    state, summary = results["resume_failed_executions"]
    assert state == "success"
    assert summary["dry_run"] is True and summary["would_resume"] == ["demo-billing-failed"]
    assert "ResumeExecution" not in demo_core.call_counts()


def test_mapped_bulk_resume_example_splits_over_workflows(example_dagbag, demo_core):
    results = run_example(example_dagbag, "example_cerebelum_bulk_resume_mapped")

    assert results["workflows_to_resume"] == ("success", ["orders", "billing"])
    assert results[("resume_failed_executions", 0)][1]["resumed"] == ["demo-orders-failed"]
    assert results[("resume_failed_executions", 1)][1]["resumed"] == ["demo-billing-failed"]
    assert demo_core.resume_count("demo-orders-failed") == demo_core.resume_count("demo-billing-failed") == 1
    assert ExecutionState.FAILED not in {
        demo_core.status(i).status for i in ("demo-orders-failed", "demo-billing-failed")
    }


# Airflow 3.2's dag.test() cannot run the HITL trigger in line (see tests/provider/test_approval.py).
@pytest.mark.apis("http")
@pytest.mark.airflow_3_3
@pytest.mark.xdist_group(HITL_GROUP)  # with test_approval.py's: one worker imports the route
def test_approval_example_approves_the_demo_execution_with_the_persons_note(example_dagbag, demo_core):
    from tests.provider._hitl import answered

    with answered("example_cerebelum_approval", "approve", "Approve", {"note": "looks right"}) as request:
        results = run_example(example_dagbag, "example_cerebelum_approval")

    state, result = results["approve"]
    assert state == "success"
    assert request["subject"] == "Approve Cerebelum execution demo-orders-approval at step ship?"
    assert result["response"] == {"note": "looks right"}
    assert result["execution"]["status"] == "EXECUTION_COMPLETED"
    assert demo_core.approval_response("demo-orders-approval") == {"note": "looks right"}
