"""Test-only DAG: scheduled by a CerebelumExecutionEventTrigger watching failures of ``e2e_events``.

Parsed by the end-to-end stack next to example_dags/ (as its own DAG bundle). Its connection,
``cerebelum_e2e_events``, is created by tests/e2e/test_event_scheduling_e2e.py, pointing at an
emulator the test drives; the run returns the payloads of the asset events that started it.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from cerebelum_provider.triggers.cerebelum import CerebelumExecutionEventTrigger

EVENTS_CONNECTION_ID = "cerebelum_e2e_events"
EVENTS_WORKFLOW = "e2e_events"
EVENTS_POLL_INTERVAL = 2.0

E2E_EVENTS_FAILED = Asset(
    "cerebelum_e2e_events_failed",
    watchers=[
        AssetWatcher(
            name="cerebelum_e2e_events_watcher",
            trigger=CerebelumExecutionEventTrigger(
                cerebelum_conn_id=EVENTS_CONNECTION_ID,
                workflow_name=EVENTS_WORKFLOW,
                states=("FAILED",),
                poll_interval=EVENTS_POLL_INTERVAL,
            ),
        )
    ],
)

with DAG(
    dag_id="e2e_event_scheduling",
    schedule=[E2E_EVENTS_FAILED],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["cerebelum", "e2e"],
):

    @task
    def record(triggering_asset_events=None) -> list[dict]:
        events = triggering_asset_events[E2E_EVENTS_FAILED] if triggering_asset_events else []
        return [event.extra["payload"] for event in events]

    record()
