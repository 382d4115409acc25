"""DAGs the approval operator's tests run through ``dag.test()``: one task, one execution from the conf."""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Param

from cerebelum_provider.operators.approval import CerebelumApprovalOperator

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False)


with _dag("cerebelum_approval") as cerebelum_approval:
    CerebelumApprovalOperator(
        task_id="decide",
        execution_id="{{ dag_run.conf['execution_id'] }}",
        params={"note": Param("looks right", type="string")},
        poll_interval=0.1,
        timeout=30,
    )

with _dag("cerebelum_approval_no_wait") as cerebelum_approval_no_wait:
    CerebelumApprovalOperator(
        task_id="decide",
        execution_id="{{ dag_run.conf['execution_id'] }}",
        wait_for_completion=False,
        poll_interval=0.1,
        timeout=30,
    )

with _dag("cerebelum_approval_short") as cerebelum_approval_short:
    CerebelumApprovalOperator(
        task_id="decide",
        execution_id="{{ dag_run.conf['execution_id'] }}",
        response_timeout=datetime.timedelta(seconds=1),
        poll_interval=0.1,
        timeout=30,
    )
