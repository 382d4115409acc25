"""Start a Cerebelum workflow and wait for it to finish.

The operator starts the workflow, publishes the new execution id to XCom (key ``execution_id``)
right away, then defers until the execution completes; its return value (XCom) is the final
execution, with each step's output (``include_outputs=True``). A retry never runs a completed
step twice: while the execution it started is still running the retry re-attaches to it, and
when it failed the retry resumes it from the step that failed (``on_retry="resume"``), so a
"charge" step that succeeded is not charged again.

Trigger it with the workflow and its inputs, e.g.
``{"workflow_name": "orders", "inputs": {"order_id": 2001}}``; the defaults run the ``orders``
workflow of the emulator's demo set. Connection: ``cerebelum_default``.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Param, task

from cerebelum_provider.operators.cerebelum import CerebelumExecuteWorkflowOperator

with DAG(
    dag_id="example_cerebelum_execute",
    description="Start a Cerebelum workflow and wait for it",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    tags=["cerebelum", "example"],
    # Native rendering keeps "inputs" a dict instead of its string form.
    render_template_as_native_obj=True,
    params={
        "workflow_name": Param("orders", type="string", minLength=1),
        "inputs": Param({"order_id": 2001}, type="object"),
    },
) as dag:
    run_workflow = CerebelumExecuteWorkflowOperator(
        task_id="run_workflow",
        cerebelum_conn_id="cerebelum_default",
        workflow_name="{{ params.workflow_name }}",
        inputs="{{ params.inputs }}",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=2,
        timeout=3600,
        include_outputs=True,
        retries=2,
        retry_delay=datetime.timedelta(seconds=10),
    )

    @task
    def report(execution: dict) -> str:
        """Log what the workflow did: its final state and the steps it completed."""
        # gRPC lists the completed steps in order; Core's REST API only has the outputs by step.
        steps = ", ".join([step["step_name"] for step in execution["completed_steps"]] or execution["step_outputs"])
        summary = f"execution {execution['execution_id']} is {execution['status']} after steps: {steps}"
        print(summary)
        return summary

    report(run_workflow.output)
