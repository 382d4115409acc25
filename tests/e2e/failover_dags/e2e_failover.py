"""Test-only DAGs of tests/e2e/test_triggerer_failover_e2e.py, parsed by its own PostgreSQL stack.

``e2e_failover`` defers mapped sensors (one per execution id in the run's conf) and mapped execute
operators that start ``e2e_failover`` executions, all through the connection the conf names (one
run per Core API). ``e2e_failover_failures`` is scheduled by a watcher of that workflow's
failures. Polls are far apart and deadlines far away: a task that ends early ends because of
what Core said.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from cerebelum_provider.operators.cerebelum import (
    CerebelumBulkResumeOperator,
    CerebelumExecuteWorkflowOperator,
)
from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor
from cerebelum_provider.triggers.cerebelum import CerebelumExecutionEventTrigger

FAILOVER_WORKFLOW = "e2e_failover"
WATCHER_CONNECTION_ID = "cerebelum_failover_http"
POLL_INTERVAL = 5.0
TASK_TIMEOUT = 1800
#: Execute operators per run (their executions are completed by the test).
EXECUTE_TASKS = int(os.environ.get("CEREBELUM_FAILOVER_EXECUTE_TASKS", "1"))
START = pendulum.datetime(2024, 1, 1, tz="UTC")

FAILOVER_FAILED = Asset(
    "cerebelum_failover_failed",
    watchers=[
        AssetWatcher(
            name="cerebelum_failover_watcher",
            trigger=CerebelumExecutionEventTrigger(
                cerebelum_conn_id=WATCHER_CONNECTION_ID,
                workflow_name=FAILOVER_WORKFLOW,
                states=("FAILED",),
                poll_interval=POLL_INTERVAL,
            ),
        )
    ],
)

with DAG(dag_id="e2e_failover", schedule=None, start_date=START, catchup=False, max_active_tasks=64):

    @task
    def execution_ids(dag_run=None) -> list[str]:
        return list(dag_run.conf["execution_ids"])

    CerebelumExecutionSensor.partial(
        task_id="wait",
        cerebelum_conn_id="{{ dag_run.conf['conn_id'] }}",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=TASK_TIMEOUT,
    ).expand(execution_id=execution_ids())

    CerebelumExecuteWorkflowOperator.partial(
        task_id="execute",
        cerebelum_conn_id="{{ dag_run.conf['conn_id'] }}",
        workflow_name=FAILOVER_WORKFLOW,
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=TASK_TIMEOUT,
        retries=1,
        retry_delay=pendulum.duration(seconds=1),
    ).expand(inputs=[{"task": number} for number in range(EXECUTE_TASKS)])

with DAG(dag_id="e2e_failover_failures", schedule=[FAILOVER_FAILED], start_date=START, catchup=False):

    @task
    def record(triggering_asset_events=None) -> int:
        return len(triggering_asset_events[FAILOVER_FAILED]) if triggering_asset_events else 0

    record()

BULK_WORKFLOW = "e2e_failover_bulk"

with DAG(dag_id="e2e_failover_bulk", schedule=None, start_date=START, catchup=False):
    # One resume at a time, so that the test can kill the worker halfway through the list.
    CerebelumBulkResumeOperator(
        task_id="resume_all",
        cerebelum_conn_id=WATCHER_CONNECTION_ID,
        workflow_name=BULK_WORKFLOW,
        max_concurrency=1,
        resume_check_grace=0.1,
        retries=1,
        retry_delay=pendulum.duration(seconds=1),
    )
