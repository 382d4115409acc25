"""Test-only DAG: a deferrable sensor on the connection the browser test saves through the UI.

Parsed by the end-to-end stack next to example_dags/ (as its own DAG bundle); the execution
to wait on comes from the run's conf: ``{"execution_id": "..."}``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor

#: The connection id the browser test types into the UI form (UI_CONNECTION_ID there).
UI_CONNECTION_ID = "cerebelum_ui"

with DAG(
    dag_id="e2e_ui_connection",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["cerebelum", "e2e"],
):
    CerebelumExecutionSensor(
        task_id="wait_with_ui_connection",
        execution_id="{{ dag_run.conf['execution_id'] }}",
        cerebelum_conn_id=UI_CONNECTION_ID,
        deferrable=True,
        poll_interval=1,
        timeout=120,
    )
