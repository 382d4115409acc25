"""A Cerebelum approval decided by a person in Airflow's UI (human-in-the-loop).

A Cerebelum step can stop and wait for approval. This DAG waits (deferred) until the execution
asks, puts the decision in front of a person with Airflow's own ``ApprovalOperator`` (the
"Required actions" page of the UI, with a note field), and on "Approve" approves the execution in
Core with a response the waiting step receives as its inputs, then waits for the execution to
finish. "Reject" skips the approval: the execution keeps waiting until its own approval timeout.

Approving needs Core's HTTP API: the ``cerebelum_default`` connection must use ``api=http``
(``cerebelum://:TOKEN@core:4001?api=http``); over gRPC the approve task fails, saying so.

Trigger it with the execution that waits, e.g. ``{"execution_id": "demo-orders-approval"}`` (the
emulator's demo set has one).
"""

from __future__ import annotations

import datetime

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, Param

from cerebelum_provider.operators.cerebelum import CerebelumApproveExecutionOperator
from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor

with DAG(
    dag_id="example_cerebelum_approval",
    description="Approve a waiting Cerebelum execution from Airflow's human-in-the-loop UI",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    tags=["cerebelum", "example"],
    params={"execution_id": Param("demo-orders-approval", type="string", minLength=1)},
) as dag:
    wait_until_it_asks = CerebelumExecutionSensor(
        task_id="wait_until_it_asks",
        execution_id="{{ params.execution_id }}",
        success_states=["WAITING_FOR_APPROVAL"],
        failure_states=["FAILED"],
        poll_interval=5,
        timeout=3600,
        deferrable=True,
    )

    decide = ApprovalOperator(
        task_id="decide",
        subject="Approve Cerebelum execution {{ params.execution_id }}?",
        body="The execution waits for approval. Approve it in Core, or reject to leave it waiting.",
        params={"note": Param("approved from Airflow", type="string")},
        response_timeout=datetime.timedelta(hours=4),
    )

    approve = CerebelumApproveExecutionOperator(
        task_id="approve",
        execution_id="{{ params.execution_id }}",
        # The waiting step receives this dict as its inputs.
        response={
            "note": "{{ ti.xcom_pull(task_ids='decide')['params_input']['note'] }}",
            "approved_in": "airflow:{{ dag.dag_id }}:{{ run_id }}",
        },
        wait_for_completion=True,
        deferrable=True,
        poll_interval=5,
        timeout=3600,
    )

    wait_until_it_asks >> decide >> approve
