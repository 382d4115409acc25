"""Wait for a Cerebelum execution to finish, without holding a worker slot.

The sensor checks the execution once, then defers: the triggerer polls Core over one shared
connection (sleep-aware: a sleeping execution is not polled every interval) and the task resumes
when the execution completes. It fails with Core's error when the execution fails, and times out
after an hour like any Airflow sensor.

Trigger it with the execution to watch, e.g. ``{"execution_id": "demo-orders-running"}``; the
default is an execution of the emulator's demo set (``cerebelum-emulator serve --demo``).
Connection: ``cerebelum_default``.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Param

from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor

with DAG(
    dag_id="example_cerebelum_wait",
    description="Wait (deferred) for a Cerebelum execution to complete",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    tags=["cerebelum", "example"],
    params={"execution_id": Param("demo-orders-running", type="string", minLength=1)},
) as dag:
    CerebelumExecutionSensor(
        task_id="wait_for_execution",
        cerebelum_conn_id="cerebelum_default",
        execution_id="{{ params.execution_id }}",
        deferrable=True,
        poll_interval=2,
        timeout=3600,
    )
