"""Nightly: resume every failed execution of a workflow, each exactly once.

``example_cerebelum_bulk_resume`` resumes the FAILED executions of one workflow (the
``workflow_name`` param, default ``orders``) with up to 16 resumes in flight. It pages through
Core's listing while resuming, so none is skipped and none is resumed twice although resumed
executions leave the FAILED set as it goes. The summary (ids resumed, already running, refused,
errors) is the task's XCom; the task fails after trying everything if anything was not resumed.
Set the ``plan_only`` param to only list what would be resumed (a dry run).

``example_cerebelum_bulk_resume_mapped`` splits the work over mapped task instances, one per
workflow (``.expand(workflow_name=[...])``), so several workers (and Core connections) share a
large backlog. Trigger it with e.g. ``{"workflow_names": ["orders", "billing"]}``.

Defaults match the emulator's demo set. Connection: ``cerebelum_default``.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Param, task

from cerebelum_provider.operators.cerebelum import CerebelumBulkResumeOperator

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)

with DAG(
    dag_id="example_cerebelum_bulk_resume",
    description="Nightly bulk resume of the failed executions of one Cerebelum workflow",
    schedule="0 3 * * *",
    start_date=START,
    catchup=False,
    tags=["cerebelum", "example"],
    render_template_as_native_obj=True,
    params={
        "workflow_name": Param("orders", type="string", minLength=1),
        "plan_only": Param(False, type="boolean"),
    },
) as dag:
    CerebelumBulkResumeOperator(
        task_id="resume_failed_executions",
        cerebelum_conn_id="cerebelum_default",
        workflow_name="{{ params.workflow_name }}",
        states=["FAILED"],
        max_concurrency=16,
        plan_only="{{ params.plan_only }}",
        fail_on_error=True,
    )

with DAG(
    dag_id="example_cerebelum_bulk_resume_mapped",
    description="Bulk resume split over mapped tasks, one per Cerebelum workflow",
    schedule=None,
    start_date=START,
    catchup=False,
    tags=["cerebelum", "example"],
    params={"workflow_names": Param(["orders", "billing"], type="array", minItems=1)},
) as mapped_dag:

    @task
    def workflows_to_resume(params: dict) -> list[str]:
        """The workflow names to split the bulk resume over (one mapped task each)."""
        return list(params["workflow_names"])

    CerebelumBulkResumeOperator.partial(
        task_id="resume_failed_executions",
        cerebelum_conn_id="cerebelum_default",
        max_concurrency=8,
    ).expand(workflow_name=workflows_to_resume())
