"""Event-driven auto-resume: when an ``orders`` execution fails, resume it; after 3 tries, notify.

No schedule and no polling task: the asset ``cerebelum_orders_failed`` is watched by a
``CerebelumExecutionEventTrigger`` in the triggerer (connection ``cerebelum_default``), which
fires one asset event each time an ``orders`` execution enters FAILED. Each event starts this
DAG; the run reads the failed executions from ``triggering_asset_events`` (several failures seen
by one poll may arrive in one run), resumes each (``CerebelumResumeExecutionOperator``, which
reads the execution back and fails the task when the resume did not take), and hands the ones
already resumed ``MAX_RESUMES`` times to ``notify``, which logs them and returns the notice.

Core releases up to be56c90 resume nothing (see the README's "Which Core"): with a connection to
Core's HTTP API, set ``ON_NOT_RESUMED = "rerun"`` to start the workflow again with the failed
execution's inputs instead (every step runs again; an execution that is itself a rerun is not
rerun again, so a workflow that keeps failing ends in a failed task, not in a loop).

How often each execution was resumed is kept in the Airflow Variable
``cerebelum_event_resume_counts`` (the most recent 1000 executions); ``max_active_runs=1`` keeps
two runs from counting at once.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, Variable, task

from cerebelum_provider.operators.cerebelum import CerebelumResumeExecutionOperator
from cerebelum_provider.triggers.cerebelum import CerebelumExecutionEventTrigger

MAX_RESUMES = 3
COUNTS_VARIABLE = "cerebelum_event_resume_counts"
KEPT_COUNTS = 1000
#: "fail" (the task fails when Core did not resume the execution) or "rerun" (api=http only).
ON_NOT_RESUMED = "fail"

ORDERS_FAILED = Asset(
    "cerebelum_orders_failed",
    watchers=[
        AssetWatcher(
            name="cerebelum_orders_failed_watcher",
            trigger=CerebelumExecutionEventTrigger(
                cerebelum_conn_id="cerebelum_default",
                workflow_name="orders",
                states=("FAILED",),
                poll_interval=30,
            ),
        )
    ],
)

log = logging.getLogger(__name__)


def plan_resumes(
    payloads: list[dict[str, Any]], counts: dict[str, int], max_resumes: int = MAX_RESUMES
) -> tuple[list[str], list[dict[str, Any]], dict[str, int]]:
    """Split failed executions into those to resume and those to give up on.

    Returns ``(execution ids to resume, payloads to notify about, the updated counts)``; an
    execution resumed ``max_resumes`` times already is notified about instead of resumed.
    """
    counts = dict(counts)
    to_resume: list[str] = []
    give_up: list[dict[str, Any]] = []
    for payload in payloads:
        execution_id = payload["execution_id"]
        if execution_id in to_resume or any(item["execution_id"] == execution_id for item in give_up):
            continue
        if counts.get(execution_id, 0) >= max_resumes:
            give_up.append(payload)
            continue
        # Re-inserted at the end, so the oldest executions are the ones forgotten first.
        counts[execution_id] = counts.pop(execution_id, 0) + 1
        to_resume.append(execution_id)
    while len(counts) > KEPT_COUNTS:
        counts.pop(next(iter(counts)))
    return to_resume, give_up, counts


with DAG(
    dag_id="example_cerebelum_event_resume",
    description="Resume an orders execution each time it fails (at most 3 times), then notify",
    schedule=[ORDERS_FAILED],
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["cerebelum", "example"],
) as dag:

    @task
    def plan(triggering_asset_events=None) -> dict[str, Any]:
        events = triggering_asset_events[ORDERS_FAILED] if triggering_asset_events else []
        payloads = [event.extra["payload"] for event in events if "payload" in (event.extra or {})]
        counts = json.loads(Variable.get(COUNTS_VARIABLE, default="{}"))
        to_resume, give_up, counts = plan_resumes(payloads, counts)
        Variable.set(COUNTS_VARIABLE, json.dumps(counts))
        return {"resume": to_resume, "give_up": give_up}

    @task
    def executions_to_resume(decision: dict[str, Any]) -> list[str]:
        return decision["resume"]

    @task
    def notify(decision: dict[str, Any]) -> list[str]:
        notices = [
            f"Cerebelum execution {item['execution_id']} ({item['workflow_name']}) failed again after "
            f"{MAX_RESUMES} resumes: {item.get('error_kind')}: {item.get('error_message')}"
            for item in decision["give_up"]
        ]
        for notice in notices:
            log.warning("%s", notice)
        return notices

    decision = plan()
    CerebelumResumeExecutionOperator.partial(
        task_id="resume",
        cerebelum_conn_id="cerebelum_default",
        wait_for_completion=False,
        on_not_resumed=ON_NOT_RESUMED,
    ).expand(execution_id=executions_to_resume(decision))
    notify(decision)
