"""Test-only DAG: the one-task approval over an HTTP connection the e2e test creates.

Parsed by the end-to-end stack next to example_dags/ (as its own DAG bundle); the execution comes
from the run's conf: ``{"execution_id": "..."}``. The stack's ``cerebelum_default`` speaks gRPC,
which has no approval, so this DAG names its own connection.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from cerebelum_provider.operators.approval import CerebelumApprovalOperator

#: The HTTP connection the e2e test creates through Airflow's REST API.
APPROVAL_CONNECTION_ID = "e2e_approval_http"

with DAG(
    dag_id="e2e_approval",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["cerebelum", "e2e"],
):
    CerebelumApprovalOperator(
        task_id="approve",
        execution_id="{{ dag_run.conf['execution_id'] }}",
        cerebelum_conn_id=APPROVAL_CONNECTION_ID,
        params={"note": Param("", type="string")},
        poll_interval=1,
        timeout=120,
    )
