"""The DAG of bench/bench_triggerer_scale.py: one deferrable sensor mapped over N executions.

The benchmark never runs it through workers: it creates a run of it and writes each mapped task
instance as deferred, with its trigger row, as Airflow's Execution API does when a worker defers.
``CEREBELUM_BENCH_WAITS`` sets N (the map length), ``CEREBELUM_BENCH_INTERVAL`` the poll interval.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor

WAITS = int(os.environ.get("CEREBELUM_BENCH_WAITS", "10"))
INTERVAL = float(os.environ.get("CEREBELUM_BENCH_INTERVAL", "10"))

with DAG("bench_triggerer_scale", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    CerebelumExecutionSensor.partial(task_id="wait", deferrable=True, poll_interval=INTERVAL).expand(
        execution_id=[f"bench-{number}" for number in range(WAITS)]
    )
