"""DAGs the resume-check tests run through ``dag.test()``: the resume operators with a short check grace.

The grace is short so a test does not wait a second per run; one DAG keeps the default to show it.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import DAG

from cerebelum_provider.operators.cerebelum import (
    CerebelumBulkResumeOperator,
    CerebelumResumeExecutionOperator,
)

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
#: Seconds between Core's resume answer and the read that checks it, in these DAGs.
GRACE = 0.2


def _dag(dag_id: str, **kwargs: Any) -> DAG:
    return DAG(dag_id, schedule=None, start_date=START, catchup=False, **kwargs)


for _mode in ("no_wait", "poll", "deferrable"):
    with _dag(f"cerebelum_resume_check_{_mode}") as _resume_dag:
        CerebelumResumeExecutionOperator(
            task_id="resume",
            execution_id="{{ dag_run.conf['execution_id'] }}",
            wait_for_completion=_mode != "no_wait",
            deferrable=_mode == "deferrable",
            poll_interval=0.1,
            timeout=20,
            resume_check_grace=GRACE,
        )
    globals()[_resume_dag.dag_id] = _resume_dag

with _dag("cerebelum_resume_check_retried") as cerebelum_resume_check_retried:
    # One Airflow retry at once: an answer that cannot change must not use it.
    CerebelumResumeExecutionOperator(
        task_id="resume",
        execution_id="{{ dag_run.conf['execution_id'] }}",
        resume_check_grace=GRACE,
        retries=1,
        retry_delay=datetime.timedelta(0),
    )

with _dag("cerebelum_resume_check_default_grace") as cerebelum_resume_check_default_grace:
    CerebelumResumeExecutionOperator(task_id="resume", execution_id="{{ dag_run.conf['execution_id'] }}")

for _fail_on_error in (True, False):
    with _dag(f"cerebelum_bulk_resume_check_fail_on_error_{_fail_on_error}".lower()) as _bulk_dag:
        CerebelumBulkResumeOperator(
            task_id="bulk_resume",
            workflow_name="orders",
            max_concurrency=4,
            fail_on_error=_fail_on_error,
            resume_check_grace=GRACE,
        )
    globals()[_bulk_dag.dag_id] = _bulk_dag
