"""DAGs the sensor tests run through ``dag.test()``: one per mode, with and without soft_fail.

The execution id comes from the run's conf, so one parsed DAG serves every test. The timeout
cases run the ``_short`` DAGs, whose 2-second sensor timeout keeps them short; every other case
runs a DAG whose timeout a loaded machine cannot reach (Airflow 3.2's ``dag.test()`` can take
10 s to hand a deferred task to its trigger), since the emulator settles those executions by itself.
"""

from __future__ import annotations

import datetime
import itertools

from airflow.sdk import DAG

from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor

MODES = ("poke", "reschedule", "deferrable")
SENSOR_TIMEOUT = 2.0
PATIENT_SENSOR_TIMEOUT = 120.0


def dag_id(mode: str, soft_fail: bool = False, short_timeout: bool = False) -> str:
    """The id of the DAG that runs the sensor in ``mode``."""
    return f"cerebelum_sensor_{mode}{'_soft_fail' if soft_fail else ''}{'_short' if short_timeout else ''}"


for _mode, _soft_fail, _short in itertools.product(MODES, (False, True), (False, True)):
    with DAG(
        dag_id(_mode, _soft_fail, _short),
        schedule=None,
        start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
        catchup=False,
    ) as _dag:
        CerebelumExecutionSensor(
            task_id="wait",
            execution_id="{{ dag_run.conf['execution_id'] }}",
            poke_interval=0.1,
            timeout=SENSOR_TIMEOUT if _short else PATIENT_SENSOR_TIMEOUT,
            mode="reschedule" if _mode == "reschedule" else "poke",
            deferrable=_mode == "deferrable",
            soft_fail=_soft_fail,
            max_sleep_wait=1.0,
        )
    globals()[_dag.dag_id] = _dag
