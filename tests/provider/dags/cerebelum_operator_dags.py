"""DAGs the operator tests run through ``dag.test()``; ids and names come from the run's conf.

The ``crash_*`` DAGs simulate a worker that dies right after starting the workflow (the one
fault here that cannot be produced for real): their first try raises after the start, the
second try must re-attach instead of starting a second execution.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import DAG

from cerebelum_provider.operators.cerebelum import (
    CerebelumApproveExecutionOperator,
    CerebelumBulkResumeOperator,
    CerebelumExecuteWorkflowOperator,
    CerebelumResumeExecutionOperator,
)
from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
WAIT_MODES = ("no_wait", "poll", "deferrable")


class CrashAfterStart(CerebelumExecuteWorkflowOperator):
    """Dies on its first try right after the start (and the XCom push), before waiting."""

    def _wait(self, client: Any, execution_id: str, **options: Any) -> dict[str, Any]:
        if self._try_number == 1:
            raise RuntimeError(f"simulated worker crash after starting {execution_id}")
        return super()._wait(client, execution_id, **options)

    def execute(self, context: Any) -> dict[str, Any]:
        self._try_number = context["ti"].try_number
        return super().execute(context)


class CrashBeforeStoring(CrashAfterStart):
    """Like CrashAfterStart, but the first try never reaches task_state_store (a lost start answer)."""

    def execute(self, context: Any) -> dict[str, Any]:
        if context["ti"].try_number == 1:
            context = {**context, "task_state_store": None}
        return super().execute(context)


class ChattyBulkResume(CerebelumBulkResumeOperator):
    """Logs a progress line after every execution (the real operator waits 10 s between lines)."""

    progress_log_interval = 0.0


def _dag(dag_id: str, **kwargs: Any) -> DAG:
    return DAG(dag_id, schedule=None, start_date=START, catchup=False, **kwargs)


for _mode in WAIT_MODES:
    with _dag(f"cerebelum_resume_{_mode}") as _resume_dag:
        CerebelumResumeExecutionOperator(
            task_id="resume",
            execution_id="{{ dag_run.conf['execution_id'] }}",
            include_outputs=True,
            wait_for_completion=_mode != "no_wait",
            deferrable=_mode == "deferrable",
            poll_interval=0.1,
            timeout=20,
        )
    globals()[_resume_dag.dag_id] = _resume_dag

    with _dag(f"cerebelum_execute_{_mode}", render_template_as_native_obj=True) as _execute_dag:
        CerebelumExecuteWorkflowOperator(
            task_id="execute",
            workflow_name="{{ dag_run.conf['workflow_name'] }}",
            inputs="{{ dag_run.conf.get('inputs') }}",
            tags=["test"],
            wait_for_completion=_mode != "no_wait",
            deferrable=_mode == "deferrable",
            poll_interval=0.1,
            timeout=20,
        )
    globals()[_execute_dag.dag_id] = _execute_dag

for _mode in ("poll", "deferrable"):
    with _dag(f"cerebelum_execute_timeout_{_mode}") as _timeout_dag:
        CerebelumExecuteWorkflowOperator(
            task_id="execute",
            workflow_name="orders",
            deferrable=_mode == "deferrable",
            poll_interval=0.2,
            timeout=1,
        )
    globals()[_timeout_dag.dag_id] = _timeout_dag

with _dag("cerebelum_execute_retried") as cerebelum_execute_retried:
    CerebelumExecuteWorkflowOperator(
        task_id="execute",
        workflow_name="orders",
        poll_interval=0.1,
        timeout=20,
        retries=1,
        retry_delay=datetime.timedelta(0),
    )

with _dag("cerebelum_execute_outage") as cerebelum_execute_outage:
    CerebelumExecuteWorkflowOperator(task_id="execute", workflow_name="orders", poll_interval=0.05, timeout=60)

for _deferrable in (False, True):
    with _dag(f"cerebelum_sensor_outage_{'deferrable' if _deferrable else 'poke'}") as _sensor_dag:
        CerebelumExecutionSensor(
            task_id="wait",
            execution_id="exec-1",
            poll_interval=0.05,
            timeout=3600,  # far away: the outage budget ends the wait
            unavailable_timeout=0.5,
            deferrable=_deferrable,
        )
    globals()[_sensor_dag.dag_id] = _sensor_dag

with _dag("cerebelum_execute_templated_connection") as cerebelum_execute_templated_connection:
    CerebelumExecuteWorkflowOperator(
        task_id="execute",
        cerebelum_conn_id="{{ dag_run.conf['conn_id'] }}",
        workflow_name="orders",
        poll_interval=0.1,
        timeout=20,
    )

for _crash in (CrashAfterStart, CrashBeforeStoring):
    for _on_retry in ("resume", "restart"):
        _prefix = "cerebelum_execute_" if _on_retry == "resume" else "cerebelum_execute_restart_"
        with _dag(f"{_prefix}{_crash.__name__}") as _crash_dag:
            _crash(
                task_id="execute",
                workflow_name="orders",
                inputs={"order_id": 7},
                poll_interval=0.1,
                timeout=20,
                retries=1,
                retry_delay=datetime.timedelta(0),
                on_retry=_on_retry,
            )
        globals()[_crash_dag.dag_id] = _crash_dag

with _dag("cerebelum_bulk_resume", render_template_as_native_obj=True) as cerebelum_bulk_resume:
    CerebelumBulkResumeOperator(
        task_id="bulk_resume",
        workflow_name="{{ dag_run.conf['workflow_name'] }}",
        plan_only="{{ dag_run.conf.get('plan_only', False) }}",
        max_concurrency=4,
        fail_on_error=True,
    )

with _dag("cerebelum_bulk_resume_mapped") as cerebelum_bulk_resume_mapped:
    CerebelumBulkResumeOperator.partial(task_id="bulk_resume", max_concurrency=4).expand(
        workflow_name=["orders", "billing"]
    )

with _dag("cerebelum_bulk_resume_chatty") as cerebelum_bulk_resume_chatty:
    ChattyBulkResume(task_id="bulk_resume", workflow_name="orders", max_concurrency=2)

with _dag("cerebelum_approve", render_template_as_native_obj=True) as cerebelum_approve:
    CerebelumApproveExecutionOperator(
        task_id="approve",
        execution_id="{{ dag_run.conf['execution_id'] }}",
        response={"note": "{{ dag_run.conf.get('note', 'ok') }}"},
        wait_for_completion=True,
        poll_interval=0.1,
        timeout=20,
    )

# A retry of a failed execution resumes it (on_retry="resume", the default), waiting in the worker
# or deferred; the execution fails once at its last step.
for _mode in ("poll", "deferrable"):
    with _dag(f"cerebelum_execute_retry_resumes_{_mode}") as _retry_dag:
        CerebelumExecuteWorkflowOperator(
            task_id="execute",
            workflow_name="{{ dag_run.conf['workflow_name'] }}",
            deferrable=_mode == "deferrable",
            poll_interval=0.1,
            timeout=30,
            resume_check_grace=0,
            retries=1,
            retry_delay=datetime.timedelta(0),
        )
    globals()[_retry_dag.dag_id] = _retry_dag

# A deferred wait bounded by the task's execution_timeout, shorter than the operator's timeout.
with _dag("cerebelum_execute_execution_timeout") as cerebelum_execute_execution_timeout:
    CerebelumExecuteWorkflowOperator(
        task_id="execute",
        workflow_name="orders",
        deferrable=True,
        poll_interval=0.2,
        execution_timeout=datetime.timedelta(seconds=3),
    )
