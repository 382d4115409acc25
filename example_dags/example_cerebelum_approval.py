"""A Cerebelum approval decided by a person in Airflow's UI (human-in-the-loop), in one task.

A Cerebelum step can stop and wait for approval. ``CerebelumApprovalOperator`` waits (deferred)
until the execution asks, then shows Core's request (the step, what it asks, its timeout) in the
"Required actions" page of Airflow's UI, with a note field. "Approve" approves the execution in
Core with the note as the waiting step's inputs, then waits (deferred) for the execution to finish.
"Reject" stops the execution in Core and fails the task, naming who rejected it.

Approving needs Core's HTTP API, the default API of the ``cerebelum_default`` connection
(``cerebelum://:TOKEN@core:4001``); over gRPC (``api=grpc``) the task fails at once, saying so.

Trigger it with the execution that waits, e.g. ``{"execution_id": "demo-orders-approval"}`` (the
emulator's demo set has one).
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Param

from cerebelum_provider.operators.approval import CerebelumApprovalOperator

with DAG(
    dag_id="example_cerebelum_approval",
    description="Approve a waiting Cerebelum execution from Airflow's human-in-the-loop UI",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    tags=["cerebelum", "example"],
    params={"execution_id": Param("demo-orders-approval", type="string", minLength=1)},
) as dag:
    CerebelumApprovalOperator(
        task_id="approve",
        execution_id="{{ params.execution_id }}",
        # The form the person fills in; its values are the waiting step's inputs on "Approve".
        params={"note": Param("approved from Airflow", type="string")},
        poll_interval=5,
        timeout=3600,
    )
