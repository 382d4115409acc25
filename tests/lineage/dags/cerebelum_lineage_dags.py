"""The DAG the OpenLineage tests run through ``dag.test()``: one task of each operator with lineage.

``execute`` starts ``orders`` and waits; ``resume`` resumes the FAILED execution the run's conf names
(its workflow is read from Core); ``bulk_resume`` resumes every FAILED ``refunds`` execution.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG

from cerebelum_provider.operators.cerebelum import (
    CerebelumBulkResumeOperator,
    CerebelumExecuteWorkflowOperator,
    CerebelumResumeExecutionOperator,
)

with DAG(
    "cerebelum_lineage",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
) as cerebelum_lineage:
    CerebelumExecuteWorkflowOperator(
        task_id="execute", workflow_name="orders", inputs={"order_id": 7}, poll_interval=0.1, timeout=20
    )
    CerebelumResumeExecutionOperator(
        task_id="resume", execution_id="{{ dag_run.conf['execution_id'] }}", resume_check_grace=0
    )
    CerebelumBulkResumeOperator(task_id="bulk_resume", workflow_name="refunds", resume_check_grace=0)
