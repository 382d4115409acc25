"""The DAG of bench/bench_triggerer_scale.py: one deferrable sensor mapped over 100 executions.

The benchmark never runs it through workers: it creates N / 100 runs of it and writes each mapped
task instance as deferred, with its trigger row, as Airflow's Execution API does when a worker
defers. The map is 100 wide (many runs, not one run of N): the triggerer deserializes a task
instance's DAG for each trigger it starts, and a DAG holding N literal ids makes that cost grow
with N. ``CEREBELUM_BENCH_INTERVAL`` sets the poll interval.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor

MAP_WIDTH = 100
INTERVAL = float(os.environ.get("CEREBELUM_BENCH_INTERVAL", "10"))

with DAG("bench_triggerer_scale", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    CerebelumExecutionSensor.partial(task_id="wait", deferrable=True, poll_interval=INTERVAL).expand(
        execution_id=[f"bench-{number}" for number in range(MAP_WIDTH)]
    )
