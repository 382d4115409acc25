"""A DAG that uses every Cerebelum task type once, for the token-leak test (test_secrets.py).

Ids and names come from the run's conf, so the parsed DAG serves any emulator. Short poll
intervals: the emulator the test starts moves executions on in real time, a step every 50 ms.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG

from cerebelum_provider.operators.cerebelum import (
    CerebelumBulkResumeOperator,
    CerebelumExecuteWorkflowOperator,
    CerebelumResumeExecutionOperator,
)
from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor

DAG_ID = "cerebelum_reliability_every_task"

with DAG(
    DAG_ID,
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
) as dag:
    resume = CerebelumResumeExecutionOperator(
        task_id="resume",
        execution_id="{{ dag_run.conf['failed_id'] }}",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=0.1,
        timeout=60,
    )
    wait_deferred = CerebelumExecutionSensor(
        task_id="wait_deferred",
        execution_id="{{ dag_run.conf['failed_id'] }}",
        poke_interval=0.1,
        timeout=60,
        deferrable=True,
    )
    wait_poke = CerebelumExecutionSensor(
        task_id="wait_poke",
        execution_id="{{ dag_run.conf['running_id'] }}",
        poke_interval=0.1,
        timeout=60,
        mode="poke",
    )
    start = CerebelumExecuteWorkflowOperator(
        task_id="start",
        workflow_name="{{ dag_run.conf['workflow'] }}",
        inputs={"customer": "{{ dag_run.conf['customer'] }}"},
        deferrable=True,
        poll_interval=0.1,
        timeout=60,
    )
    bulk = CerebelumBulkResumeOperator(
        task_id="bulk",
        workflow_name="{{ dag_run.conf['bulk_workflow'] }}",
        max_concurrency=4,
    )

    resume >> wait_deferred >> wait_poke >> start >> bulk
