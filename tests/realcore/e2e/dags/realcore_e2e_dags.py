"""DAGs the real-Core end-to-end tests trigger in a real Airflow stack (scheduler, triggerer...).

Both wait in the triggerer (``deferrable=True``) through ``cerebelum_default``, which the tests
point at the real Core's HTTP API. Ids come from the run's conf.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG

from cerebelum_provider.operators.cerebelum import CerebelumExecuteWorkflowOperator
from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
POLL_INTERVAL = 0.5
#: Long enough for a loaded machine: a triggerer's first connection lookup can take tens of seconds.
TASK_TIMEOUT = 150.0

with DAG("realcore_e2e_wait", schedule=None, start_date=START, catchup=False) as realcore_e2e_wait:
    CerebelumExecutionSensor(
        task_id="wait_for_execution",
        execution_id="{{ dag_run.conf['execution_id'] }}",
        poll_interval=POLL_INTERVAL,
        timeout=TASK_TIMEOUT,
        deferrable=True,
    )

with DAG("realcore_e2e_execute", schedule=None, start_date=START, catchup=False) as realcore_e2e_execute:
    CerebelumExecuteWorkflowOperator(
        task_id="execute",
        workflow_name="{{ dag_run.conf['workflow_name'] }}",
        inputs={"source": "realcore-e2e"},
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=TASK_TIMEOUT,
    )
