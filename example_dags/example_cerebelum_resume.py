"""Resume one failed Cerebelum execution and wait for it to finish.

Core replays the execution's events and carries on from the step that failed (completed steps
are skipped). Core's answer is checked, never assumed: after "resumed" or "already_running" the
execution is read back, and one still FAILED fails the task (the released Cores answer so and
resume nothing). Core refusing to resume (an unknown or completed execution) fails the task with
a clear message. The wait then defers like the sensor, and fails with Core's error if the
execution fails again.

Trigger it with the execution to resume, e.g. ``{"execution_id": "demo-orders-failed"}``; the
default is the failed execution of the emulator's demo set. Connection: ``cerebelum_default``.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Param

from cerebelum_provider.operators.cerebelum import CerebelumResumeExecutionOperator

with DAG(
    dag_id="example_cerebelum_resume",
    description="Resume a failed Cerebelum execution and wait for it",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    tags=["cerebelum", "example"],
    params={"execution_id": Param("demo-orders-failed", type="string", minLength=1)},
) as dag:
    CerebelumResumeExecutionOperator(
        task_id="resume_execution",
        cerebelum_conn_id="cerebelum_default",
        execution_id="{{ params.execution_id }}",
        skip_completed_steps=True,
        wait_for_completion=True,
        deferrable=True,
        poll_interval=2,
        timeout=3600,
    )
