"""The operators' OpenLineage facets, as the OpenLineage provider extracts them after a task succeeds.

A listener registered with the task SDK's listener manager runs, on each task's success, what the
OpenLineage listener runs there (``ExtractorManager.extract_metadata`` with the runtime task
instance and the rendered task), so the facets come from a real ``dag.test()`` run against the
emulator, through the provider's own extractor selection. Sending the events (the listener's
transport) is the OpenLineage provider's business and is not run here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.listeners import hookimpl

from tests.core_apis import connection_uri, current_api, set_current_api
from tests.provider._deferral import completed_once_the_trigger_polls, deferred

TOKEN = "lineage-test-token-93ad"

# One pytest-xdist worker for the three: importing the OpenLineage provider's extractors costs several
# seconds of CPU in each process that runs one of them.
pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("openlineage")]


class LineageRecorder:
    """Records, per task id, the OperatorLineage the OpenLineage provider extracts on success."""

    def __init__(self) -> None:
        self.lineage: dict[str, Any] = {}

    @hookimpl
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        from airflow.providers.openlineage.extractors.manager import ExtractorManager
        from airflow.utils.state import TaskInstanceState

        self.lineage[task_instance.task_id] = ExtractorManager().extract_metadata(
            dagrun=task_instance.get_template_context()["dag_run"],
            task=task_instance.task,
            task_instance_state=TaskInstanceState.SUCCESS,
            task_instance=task_instance,
        )


@pytest.fixture
def recorded_lineage():
    from airflow.sdk.listener import get_listener_manager

    recorder = LineageRecorder()
    manager = get_listener_manager()
    manager.add_listener(recorder)
    yield recorder.lineage
    manager.pm.unregister(recorder)


def core_namespace(core: Any) -> str:
    port = core.http_port if current_api() == "http" else core.port
    return f"cerebelum://127.0.0.1:{port}"


def started_execution_id(run: Any) -> str:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(run_id=run.run_id, task_id="execute", key="execution_id")
        return rows.one().value


def as_json(facets: dict[str, Any]) -> dict[str, Any]:
    """The run facets as the OpenLineage client serializes them into an event."""
    from openlineage.client.serde import Serde

    return {name: json.loads(Serde.to_json(facet)) for name, facet in facets.items()}


def test_execute_resume_and_bulk_report_core_as_namespace_and_the_workflow_as_job(
    core_factory, monkeypatch, airflow_db, recorded_lineage
):
    from tests.lineage.dags.cerebelum_lineage_dags import cerebelum_lineage

    core = core_factory(step_seconds=0.05, token=TOKEN)
    core.define_workflow("orders", ["validate", "charge"])
    failed_billing = core.start_execution("billing", fail_at=0)
    failed_refunds = [core.start_execution("refunds", fail_at=0) for _ in range(3)]
    core.run_until_settled()
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, token=TOKEN))
    namespace = core_namespace(core)

    run = cerebelum_lineage.test(run_conf={"execution_id": failed_billing})

    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == dict.fromkeys(
        ("execute", "resume", "bulk_resume"), "success"
    )
    execute_id = started_execution_id(run)
    assert set(recorded_lineage) == {"execute", "resume", "bulk_resume"}

    execute = as_json(recorded_lineage["execute"].run_facets)
    assert execute["cerebelum"]["job"] == {"namespace": namespace, "name": "orders"}
    assert execute["cerebelum"]["executionIds"] == [execute_id]
    assert execute["externalQuery"]["externalQueryId"] == execute_id
    assert execute["externalQuery"]["source"] == namespace

    resume = as_json(recorded_lineage["resume"].run_facets)
    assert resume["cerebelum"]["job"] == {"namespace": namespace, "name": "billing"}
    assert resume["cerebelum"]["executionIds"] == [failed_billing]
    assert resume["externalQuery"] == {**resume["externalQuery"], "externalQueryId": failed_billing}

    bulk = as_json(recorded_lineage["bulk_resume"].run_facets)
    assert bulk["cerebelum"]["job"] == {"namespace": namespace, "name": "refunds"}
    assert sorted(bulk["cerebelum"]["executionIds"]) == sorted(failed_refunds)
    assert "externalQuery" not in bulk  # several executions: no one external id

    for lineage in recorded_lineage.values():
        assert lineage.inputs == [] and lineage.outputs == []
        assert TOKEN not in json.dumps(as_json(lineage.run_facets))


def test_a_deferred_execute_reports_its_execution_after_the_trigger(
    core_factory, monkeypatch, airflow_db, recorded_lineage, caplog
):
    from tests.lineage.dags.cerebelum_lineage_dags import cerebelum_lineage_deferred

    core = core_factory(token=TOKEN)  # manual clock: the execution completes when the trigger polls
    core.define_workflow("orders", ["validate", "charge"])
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, token=TOKEN))

    # Reads: the task's one check before deferring, then the trigger's.
    with completed_once_the_trigger_polls(core, lambda: core.execution_ids()[0], status_reads=2):
        run = cerebelum_lineage_deferred.test()

    assert deferred(caplog)
    execute_id = started_execution_id(run)
    facets = as_json(recorded_lineage["execute"].run_facets)
    assert facets["cerebelum"]["job"] == {"namespace": core_namespace(core), "name": "orders"}
    assert facets["cerebelum"]["executionIds"] == [execute_id]
    assert facets["externalQuery"]["externalQueryId"] == execute_id


def test_reruns_are_the_executions_reported_with_the_failed_ones_they_rerun(
    core_factory, monkeypatch, airflow_db, recorded_lineage
):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from tests.lineage.dags.cerebelum_lineage_dags import cerebelum_lineage_rerun

    # The released Core's behaviour: a resume of a FAILED execution runs nothing. Rerunning reads
    # the event log, which only Core's HTTP API serves.
    core = core_factory(real_core_bugs=True, step_seconds=0.05, token=TOKEN)
    failed_billing = core.start_execution("billing", {"invoice": 1}, fail_at=0)
    failed_refunds = [core.start_execution("refunds", {"refund": n}, fail_at=0) for n in range(2)]
    core.run_until_settled()
    set_current_api("http")
    try:
        monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, token=TOKEN))
        namespace = core_namespace(core)
    finally:
        set_current_api("grpc")

    run = cerebelum_lineage_rerun.test(run_conf={"execution_id": failed_billing})

    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == dict.fromkeys(
        ("resume", "bulk_resume"), "success"
    )
    with create_session() as session:
        xcoms = {
            (row.task_id, row.key): row.value for row in session.query(XComModel).filter_by(run_id=run.run_id)
        }
    billing_rerun = xcoms[("resume", "rerun_execution_id")]
    refunds_reruns = xcoms[("bulk_resume", "return_value")]["rerun"]
    assert sorted(refunds_reruns) == sorted(failed_refunds)

    resume = as_json(recorded_lineage["resume"].run_facets)
    assert resume["cerebelum"]["job"] == {"namespace": namespace, "name": "billing"}
    assert resume["cerebelum"]["executionIds"] == [billing_rerun]
    assert resume["cerebelum"]["rerunOf"] == {billing_rerun: failed_billing}
    assert resume["externalQuery"]["externalQueryId"] == billing_rerun

    bulk = as_json(recorded_lineage["bulk_resume"].run_facets)
    assert bulk["cerebelum"]["job"] == {"namespace": namespace, "name": "refunds"}
    assert sorted(bulk["cerebelum"]["executionIds"]) == sorted(refunds_reruns.values())
    assert bulk["cerebelum"]["rerunOf"] == {rerun: failed for failed, rerun in refunds_reruns.items()}
    for lineage in recorded_lineage.values():
        assert TOKEN not in json.dumps(as_json(lineage.run_facets))
