"""DAGs that test_provider.py runs through ``dag.test()`` against the real Core (release be56c90).

Every id, workflow name and response comes from the run's conf, so one parsed DAG serves every
test. The connection ids are the two ways to reach the one real Core: :data:`HTTP_CONN_ID`
(Core's REST API) and :data:`GRPC_CONN_ID` (gRPC); the tests point them at the running stack.
Intervals are short because the real worker finishes a step in milliseconds.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import DAG

from cerebelum_provider.operators.cerebelum import (
    CerebelumApproveExecutionOperator,
    CerebelumBulkResumeOperator,
    CerebelumExecuteWorkflowOperator,
    CerebelumResumeExecutionOperator,
)
from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
HTTP_CONN_ID = "cerebelum_real_http"
GRPC_CONN_ID = "cerebelum_real_grpc"
CONN_IDS = {"http": HTTP_CONN_ID, "grpc": GRPC_CONN_ID}
SENSOR_MODES = ("poke", "deferrable")
POLL_INTERVAL = 0.2
#: Seconds any task here may wait for Core; the real worker settles an execution in well under one.
TASK_TIMEOUT = 20.0
#: Seconds between a resume answer and the read that checks it.
RESUME_CHECK_GRACE = 0.5


def sensor_dag_id(api: str, mode: str) -> str:
    """The id of the DAG whose sensor waits over ``api`` ("http"/"grpc") in ``mode``."""
    return f"realcore_sensor_{api}_{mode}"


def _dag(dag_id: str, **kwargs: Any) -> DAG:
    return DAG(dag_id, schedule=None, start_date=START, catchup=False, **kwargs)


for _api, _conn_id in CONN_IDS.items():
    for _mode in SENSOR_MODES:
        with _dag(sensor_dag_id(_api, _mode)) as _sensor_dag:
            CerebelumExecutionSensor(
                task_id="wait",
                execution_id="{{ dag_run.conf['execution_id'] }}",
                cerebelum_conn_id=_conn_id,
                poll_interval=POLL_INTERVAL,
                timeout=TASK_TIMEOUT,
                deferrable=_mode == "deferrable",
            )
        globals()[_sensor_dag.dag_id] = _sensor_dag

with _dag("realcore_execute_deferrable", render_template_as_native_obj=True) as realcore_execute_deferrable:
    CerebelumExecuteWorkflowOperator(
        task_id="execute",
        workflow_name="{{ dag_run.conf['workflow_name'] }}",
        inputs="{{ dag_run.conf.get('inputs') }}",
        cerebelum_conn_id=HTTP_CONN_ID,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=TASK_TIMEOUT,
    )

with _dag("realcore_approve", render_template_as_native_obj=True) as realcore_approve:
    CerebelumApproveExecutionOperator(
        task_id="approve",
        execution_id="{{ dag_run.conf['execution_id'] }}",
        response="{{ dag_run.conf['response'] }}",
        cerebelum_conn_id=HTTP_CONN_ID,
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=TASK_TIMEOUT,
    )

with _dag("realcore_resume") as realcore_resume:
    CerebelumResumeExecutionOperator(
        task_id="resume",
        execution_id="{{ dag_run.conf['execution_id'] }}",
        cerebelum_conn_id=HTTP_CONN_ID,
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=TASK_TIMEOUT,
        resume_check_grace=RESUME_CHECK_GRACE,
        # One retry at once: an answer that cannot change must not use it.
        retries=1,
        retry_delay=datetime.timedelta(0),
    )

for _fail_on_error in (True, False):
    with _dag(f"realcore_bulk_resume_fail_on_error_{str(_fail_on_error).lower()}") as _bulk_dag:
        CerebelumBulkResumeOperator(
            task_id="bulk_resume",
            workflow_name="{{ dag_run.conf['workflow_name'] }}",
            cerebelum_conn_id=HTTP_CONN_ID,
            max_concurrency=4,
            fail_on_error=_fail_on_error,
            resume_check_grace=RESUME_CHECK_GRACE,
        )
    globals()[_bulk_dag.dag_id] = _bulk_dag
