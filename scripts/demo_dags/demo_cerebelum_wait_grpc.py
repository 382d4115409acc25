"""The demo's one DAG over Core's gRPC API: the same deferrable wait as ``example_cerebelum_wait``,
through the connection ``cerebelum_grpc`` (``api=grpc``), to show the gRPC path working against
the emulator while every example DAG uses ``cerebelum_default`` over HTTP."""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Param

from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor

with DAG(
    dag_id="demo_cerebelum_wait_grpc",
    description="Wait for a Cerebelum execution over Core's gRPC API (connection cerebelum_grpc)",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    tags=["cerebelum", "demo"],
    params={"execution_id": Param("demo-orders-running", type="string", minLength=1)},
) as dag:
    CerebelumExecutionSensor(
        task_id="wait_over_grpc",
        cerebelum_conn_id="cerebelum_grpc",
        execution_id="{{ params.execution_id }}",
        deferrable=True,
        poll_interval=2,
        timeout=300,
    )
