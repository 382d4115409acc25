"""Event-driven scheduling in the real four-process Airflow: a Cerebelum failure starts a DAG.

The watcher of ``tests/e2e/dags/e2e_event_scheduling.py`` polls an emulator this module runs in
its own process (in-memory log, manual clock, so an execution fails exactly when the test says),
through the connection ``cerebelum_e2e_events`` the test creates over Airflow's REST API. The
triggerer process is restarted in the middle, as an operator would: what fired before must not
fire again, and a failure made while it was down must fire once it is back.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from .dags.e2e_event_scheduling import EVENTS_CONNECTION_ID, EVENTS_POLL_INTERVAL, EVENTS_WORKFLOW

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "e2e_event_scheduling"
ASSET_NAME = "cerebelum_e2e_events_failed"


@pytest.fixture(scope="module")
def events_core() -> Iterator[Any]:
    from cerebelum_provider.emulator import CoreEmulator

    with CoreEmulator() as core:
        yield core


def fail_one(core: Any) -> tuple[str, float]:
    """Start an ``e2e_events`` execution and fail it now; return its id and when it failed."""
    execution_id = core.start_execution(EVENTS_WORKFLOW, fail_at=0, error_message="card declined")
    core.advance(1, execution_id)
    return execution_id, time.time()


def list_calls(core: Any) -> int:
    return core.call_counts().get("ListExecutions", 0)


def wait_until(condition, timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def asset_events(airflow: Any) -> list[dict[str, Any]]:
    """The watched asset's events, read from the metadata database: Airflow 3.3.2's
    ``GET /api/v2/assets/events`` answers 500 while a DAG run it created is still queued."""
    with sqlite3.connect(f"file:{airflow.home / 'airflow.db'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT e.extra, e.timestamp FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE a.name = ? ORDER BY e.id",
            (ASSET_NAME,),
        ).fetchall()
    return [
        {"extra": json.loads(extra), "timestamp": datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc)}
        for extra, stamp in rows
    ]


def fired_ids(airflow: Any) -> Counter:
    return Counter(event["extra"]["payload"]["execution_id"] for event in asset_events(airflow))


def dag_run_ids(airflow: Any) -> list[str]:
    return airflow.asset_triggered_runs(DAG_ID)


def restart(airflow: Any, service: str, **env: str) -> None:
    airflow.restart_service(service, **env)


@pytest.fixture
def scheduler_creating_runs(airflow: Any) -> Iterator[None]:
    """The shared stack's scheduler creates no runs by itself (``use_job_schedule`` off, so that
    cron examples never start on their own); asset-triggered runs need it on, for this test only."""
    restart(airflow, "scheduler", AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="True")
    yield
    restart(airflow, "scheduler")


def test_a_failure_starts_the_dag_and_a_triggerer_restart_fires_nothing_twice(
    airflow, events_core, scheduler_creating_runs
):
    airflow.request(
        "POST",
        "/api/v2/connections",
        json={
            "connection_id": EVENTS_CONNECTION_ID,
            "conn_type": "cerebelum",
            "host": "127.0.0.1",
            "port": events_core.http_port,  # no "api": HTTP, the default
        },
        expect=(201,),
    )
    already_failed, _ = fail_one(events_core)
    airflow.wait_for_dags([DAG_ID])
    airflow.unpause(DAG_ID)
    # The watcher is running once it has listed twice (its baseline, then a regular poll).
    wait_until(lambda: list_calls(events_core) >= 2, 120, "the watcher polls the emulator")

    execution_id, failed_at = fail_one(events_core)
    [event] = wait_until(lambda: asset_events(airflow), 4 * EVENTS_POLL_INTERVAL + 10, "an asset event")
    payload = event["extra"]["payload"]
    assert payload["execution_id"] == execution_id
    assert payload["state"] == "EXECUTION_FAILED"
    assert payload["error_message"] == "card declined"
    fired_after = event["timestamp"].timestamp() - failed_at
    # Seen by the next poll (at most one interval), handed to Airflow at its next sync (~1 s).
    assert fired_after <= 2 * EVENTS_POLL_INTERVAL, fired_after

    [run_id] = wait_until(lambda: dag_run_ids(airflow), 60, "a DAG run started by the asset event")
    result = airflow.wait_for_run(DAG_ID, run_id, timeout=120)
    assert result.succeeded, result
    assert [item["execution_id"] for item in airflow.xcom(DAG_ID, run_id, "record")] == [execution_id]

    # Restart: the failure already fired stays fired; one made while the triggerer is down fires.
    time.sleep(2 * EVENTS_POLL_INTERVAL)  # past the state write that follows an event
    restart(airflow, "triggerer")
    while_down, _ = fail_one(events_core)
    calls = list_calls(events_core)
    wait_until(lambda: list_calls(events_core) >= calls + 3, 120, "the restarted watcher polls again")
    wait_until(
        lambda: fired_ids(airflow)[while_down], 4 * EVENTS_POLL_INTERVAL + 10, "the failure made while down"
    )
    time.sleep(3 * EVENTS_POLL_INTERVAL)
    assert fired_ids(airflow) == Counter({execution_id: 1, while_down: 1})
    assert already_failed not in fired_ids(airflow)
