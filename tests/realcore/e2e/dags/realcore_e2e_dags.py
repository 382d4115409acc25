"""DAGs the real-Core end-to-end tests trigger in a real Airflow stack (scheduler, triggerer...).

The sensor and the execute operator wait in the triggerer (``deferrable=True``) through
``cerebelum_default``, which the tests point at the real Core's HTTP API; the approval waits for a
person's answer. Ids come from the run's conf.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Param

from cerebelum_provider.operators.approval import CerebelumApprovalOperator
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

# A person's decision in the Required actions page. It does not wait for the end: the real worker
# finishes in milliseconds, and a trigger that fires before the scheduler hears that the approving
# try deferred makes Airflow 3.3.2 fail the resumed task; the test reads the end from Core itself.
with DAG("realcore_e2e_approval", schedule=None, start_date=START, catchup=False) as realcore_e2e_approval:
    CerebelumApprovalOperator(
        task_id="approve",
        execution_id="{{ dag_run.conf['execution_id'] }}",
        params={"note": Param("", type="string")},
        wait_for_completion=False,
        poll_interval=POLL_INTERVAL,
        timeout=TASK_TIMEOUT,
    )
