"""DAGs that test_rerun.py runs through ``dag.test()`` against the real Core (release be56c90).

The resume operator and the bulk resume with ``on_not_resumed="rerun"``, over the HTTP connection
test_rerun.py points at the running stack; ids and workflow names come from the run's conf.
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
HTTP_CONN_ID = "cerebelum_rerun_http"
POLL_INTERVAL = 0.2
#: Seconds any task here may wait for Core; the real worker settles an execution in well under one.
TASK_TIMEOUT = 30.0
#: Seconds between a resume answer and the read that checks it.
RESUME_CHECK_GRACE = 0.5


def _dag(dag_id: str, **kwargs: Any) -> DAG:
    return DAG(dag_id, schedule=None, start_date=START, catchup=False, **kwargs)


with _dag("realcore_rerun") as realcore_rerun:
    CerebelumResumeExecutionOperator(
        task_id="resume",
        execution_id="{{ dag_run.conf['execution_id'] }}",
        cerebelum_conn_id=HTTP_CONN_ID,
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=TASK_TIMEOUT,
        resume_check_grace=RESUME_CHECK_GRACE,
        on_not_resumed="rerun",
    )

with _dag("realcore_bulk_rerun", render_template_as_native_obj=True) as realcore_bulk_rerun:
    CerebelumBulkResumeOperator(
        task_id="bulk_resume",
        workflow_name="{{ dag_run.conf['workflow_name'] }}",
        plan_only="{{ dag_run.conf.get('plan_only', False) }}",
        cerebelum_conn_id=HTTP_CONN_ID,
        max_concurrency=4,
        resume_check_grace=RESUME_CHECK_GRACE,
        on_not_resumed="rerun",
    )
