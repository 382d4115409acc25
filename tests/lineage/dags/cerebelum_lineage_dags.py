"""The DAGs the OpenLineage tests run through ``dag.test()``.

``cerebelum_lineage`` has one task of each operator with lineage: ``execute`` starts ``orders`` and
waits; ``resume`` resumes the FAILED execution the run's conf names (its workflow is read from
Core); ``bulk_resume`` resumes every FAILED ``refunds`` execution. ``cerebelum_lineage_deferred``
starts ``orders`` and waits deferred: its facets come from the task that ran after the trigger.
``cerebelum_lineage_rerun`` resumes with ``on_not_resumed="rerun"``, for a Core that resumes nothing.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG

from cerebelum_provider.operators.cerebelum import (
    CerebelumBulkResumeOperator,
    CerebelumExecuteWorkflowOperator,
    CerebelumResumeExecutionOperator,
)

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)

with DAG("cerebelum_lineage", schedule=None, start_date=START, catchup=False) as cerebelum_lineage:
    CerebelumExecuteWorkflowOperator(
        task_id="execute", workflow_name="orders", inputs={"order_id": 7}, poll_interval=0.1, timeout=20
    )
    CerebelumResumeExecutionOperator(
        task_id="resume", execution_id="{{ dag_run.conf['execution_id'] }}", resume_check_grace=0
    )
    CerebelumBulkResumeOperator(task_id="bulk_resume", workflow_name="refunds", resume_check_grace=0)

with DAG(
    "cerebelum_lineage_deferred", schedule=None, start_date=START, catchup=False
) as cerebelum_lineage_deferred:
    CerebelumExecuteWorkflowOperator(
        task_id="execute", workflow_name="orders", deferrable=True, poll_interval=0.1, timeout=20
    )

with DAG(
    "cerebelum_lineage_rerun", schedule=None, start_date=START, catchup=False
) as cerebelum_lineage_rerun:
    CerebelumResumeExecutionOperator(
        task_id="resume",
        execution_id="{{ dag_run.conf['execution_id'] }}",
        resume_check_grace=0.1,
        on_not_resumed="rerun",
    )
    CerebelumBulkResumeOperator(
        task_id="bulk_resume", workflow_name="refunds", resume_check_grace=0.1, on_not_resumed="rerun"
    )
