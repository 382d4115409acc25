"""DAGs the rerun tests run through ``dag.test()``: the resume operators with ``on_not_resumed="rerun"``.

The check grace is short so a test does not wait a second per run.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import DAG

from cerebelum_provider.operators.cerebelum import (
    CerebelumBulkResumeOperator,
    CerebelumExecuteWorkflowOperator,
    CerebelumResumeExecutionOperator,
)

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
#: Seconds between Core's resume answer and the read that checks it, in these DAGs.
GRACE = 0.1


def _dag(dag_id: str, **kwargs: Any) -> DAG:
    return DAG(dag_id, schedule=None, start_date=START, catchup=False, **kwargs)


for _mode in ("no_wait", "deferrable"):
    with _dag(f"cerebelum_rerun_{_mode}") as _resume_dag:
        CerebelumResumeExecutionOperator(
            task_id="resume",
            execution_id="{{ dag_run.conf['execution_id'] }}",
            wait_for_completion=_mode != "no_wait",
            deferrable=_mode == "deferrable",
            poll_interval=0.1,
            timeout=30,
            resume_check_grace=GRACE,
            on_not_resumed="rerun",
        )
    globals()[_resume_dag.dag_id] = _resume_dag

with _dag("cerebelum_bulk_rerun", render_template_as_native_obj=True) as cerebelum_bulk_rerun:
    CerebelumBulkResumeOperator(
        task_id="bulk_resume",
        workflow_name="orders",
        max_concurrency=4,
        plan_only="{{ dag_run.conf.get('plan_only', False) }}",
        resume_check_grace=GRACE,
        on_not_resumed="rerun",
    )

# A retry of the execute operator whose execution failed and is not resumed: rerun it, once.
with _dag("cerebelum_execute_retry_reruns") as cerebelum_execute_retry_reruns:
    CerebelumExecuteWorkflowOperator(
        task_id="execute",
        workflow_name="orders",
        inputs={"order": 7, "express": True},
        poll_interval=0.1,
        timeout=30,
        resume_check_grace=0,
        on_not_resumed="rerun",
        retries=2,
        retry_delay=datetime.timedelta(0),
    )
