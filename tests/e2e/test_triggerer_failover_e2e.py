"""Airflow across processes: PostgreSQL metadata database, two triggerers, one SIGKILLed mid-wait.

A stack of its own (``AirflowStack(database="postgresql", triggerers=2)``) parses
``tests/e2e/failover_dags``. Two runs of ``e2e_failover``, one over Core's HTTP API and one over
gRPC, defer mapped sensors and execute operators on an emulator this test drives (manual clock:
an execution completes or fails exactly when the test says), and one event watcher lists that
workflow's failures. The triggerer holding every trigger (the other one paused while they were
assigned) is SIGKILLed; while it is down the executions complete and fail; the other triggerer
takes the triggers over once the dead one's heartbeat is older than
``triggerer_health_check_threshold``. Then every task must end as its execution calls for, none
retried, no workflow started twice, and each failed execution must give exactly one asset event.

``CEREBELUM_FAILOVER_SENSORS`` (sensors per run, default 2: one execution completes, one fails) and
``CEREBELUM_FAILOVER_EXECUTE_TASKS`` (execute operators per run, default 1) size it; every task is a
task process to start and resume on a 2-core machine the whole suite shares, so the test's default
is the smallest size with each outcome on each API, and
``bench/bench_triggerer_failover.py`` runs it with 100 of each API (200 sensors) and records the
figures this test prints.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from airflow_stack import AirflowStack

from .failover_dags.e2e_failover import BULK_WORKFLOW, FAILOVER_WORKFLOW, TASK_TIMEOUT, WATCHER_CONNECTION_ID

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]


SENSORS = int(os.environ.get("CEREBELUM_FAILOVER_SENSORS", "2"))
EXECUTE_TASKS = int(os.environ.get("CEREBELUM_FAILOVER_EXECUTE_TASKS", "1"))
#: Seconds without a heartbeat after which a triggerer's triggers go to another: Airflow's default
#: (shorter, a loaded 2-core machine's slow heartbeats already move triggers).
HEALTH_CHECK_THRESHOLD = 30
#: Failed executions the bulk resume task resumes, killed halfway.
BULK_FAILED = 30
DAG_ID = "e2e_failover"
ASSET_NAME = "cerebelum_failover_failed"
ARTIFACTS = REPO / "test-artifacts" / "failover-logs"
FIGURES = os.environ.get("CEREBELUM_FAILOVER_FIGURES")


@pytest.fixture(scope="module")
def core() -> Iterator[Any]:
    from cerebelum_provider.emulator import CoreEmulator

    with CoreEmulator() as emulator:
        emulator.define_workflow(FAILOVER_WORKFLOW, ["reserve", "charge"])
        emulator.define_workflow(BULK_WORKFLOW, ["extract", "load"])
        yield emulator


@pytest.fixture(scope="module")
def airflow(core: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    stack = AirflowStack(
        home=tmp_path_factory.mktemp("airflow-pg"),
        dags_folder=Path(__file__).parent / "failover_dags",
        connections={
            WATCHER_CONNECTION_ID: f"cerebelum://127.0.0.1:{core.http_port}?api=http",
            "cerebelum_failover_grpc": f"cerebelum://{core.address}?api=grpc",
        },
        extra_env={
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True",
            "CEREBELUM_FAILOVER_EXECUTE_TASKS": str(EXECUTE_TASKS),
        },
        database="postgresql",
        triggerers=2,
        startup_timeout=300,
    )
    try:
        with stack:
            yield stack
    finally:
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
        if stack.logs_dir.exists():
            shutil.copytree(stack.logs_dir, ARTIFACTS, dirs_exist_ok=True)


def query(airflow: AirflowStack, sql: str, *args: Any) -> list[tuple]:
    """Rows from Airflow's metadata database."""
    assert airflow.postgres is not None
    with psycopg2.connect(airflow.postgres.dsn) as db, db.cursor() as cursor:
        cursor.execute(sql, args)
        return cursor.fetchall()


def triggers_by_host(airflow: AirflowStack) -> Counter:
    """How many triggers each triggerer (by host name) holds; None for unassigned ones."""
    rows = query(
        airflow,
        "SELECT j.hostname, count(*) FROM trigger t LEFT JOIN job j ON j.id = t.triggerer_id "
        "GROUP BY j.hostname",
    )
    return Counter({host: count for host, count in rows})


def wait_until(condition, timeout: float, what: str, interval: float = 0.5) -> Any:
    began = time.monotonic()
    while time.monotonic() < began + timeout:
        value = condition()
        if value:
            print(f"after {time.monotonic() - began:.1f}s: {what}", flush=True)
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def task_instances(airflow: AirflowStack, run_id: str) -> dict[tuple[str, int], tuple[str, int]]:
    """``(task_id, map_index)`` -> ``(state, try_number)`` of a run's task instances, read from the
    database: the REST API pages them (100 at most)."""
    rows = query(
        airflow,
        "SELECT task_id, map_index, state, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s",
        DAG_ID,
        run_id,
    )
    return {(task_id, map_index): (state, try_number) for task_id, map_index, state, try_number in rows}


def deferred_count(airflow: AirflowStack, run_ids: list[str]) -> int:
    return sum(
        state == "deferred" for run_id in run_ids for state, _ in task_instances(airflow, run_id).values()
    )


def heartbeat_age(airflow: AirflowStack, host: str) -> float:
    """Seconds since the newest triggerer job on ``host`` last heartbeat."""
    [[age]] = query(
        airflow,
        "SELECT EXTRACT(EPOCH FROM now() - latest_heartbeat) FROM job "
        "WHERE hostname = %s AND job_type = 'TriggererJob' ORDER BY id DESC LIMIT 1",
        host,
    )
    return float(age)


def trigger_log(airflow: AirflowStack, trigger_id: int) -> dict[str, list[str]]:
    """Each triggerer's log lines about one trigger (started, fired, completed), by triggerer."""
    marks = (f"trigger ID {trigger_id} starting", f"name='ID {trigger_id}'")
    lines = {}
    for name in ("triggerer-1", "triggerer-2"):
        path = airflow.logs_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        lines[name] = [line[:240] for line in text.splitlines() if any(mark in line for mark in marks)]
    return lines


def instances_running(airflow: AirflowStack, trigger_id: int) -> dict[str, int]:
    """How many instances of one trigger each triggerer runs: started less completed (its log)."""
    return {
        name: sum(f"trigger ID {trigger_id} starting" in line for line in lines)
        - sum("trigger completed" in line for line in lines)
        for name, lines in trigger_log(airflow, trigger_id).items()
    }


def test_a_triggerer_killed_mid_wait_loses_nothing_and_does_nothing_twice(airflow: AirflowStack, core: Any):
    # Half of each run's executions will complete, half fail (at their first step).
    plans = {api: [index % 2 == 0 for index in range(SENSORS)] for api in ("http", "grpc")}
    executions = {
        api: [
            core.start_execution(FAILOVER_WORKFLOW, fail_at=None if completes else 0)
            for completes in plans[api]
        ]
        for api in plans
    }
    airflow.wait_for_dags([DAG_ID, "e2e_failover_failures"], timeout=300)
    # Every trigger goes to the triggerer killed later: the other is paused (SIGSTOP) until that one
    # has taken them all and runs them. So the survivor takes over every kind (sensors, execute
    # operators and the watcher), and runs no copy of its own before the kill: Airflow runs a
    # trigger at least once, and two copies of the watcher at once (a triggerer late with its
    # heartbeat, on a loaded machine) may each fire an entry, which is not what this test is about.
    victim, survivor = "triggerer-2", "triggerer-1"
    airflow.pause_service(survivor)
    airflow.unpause("e2e_failover_failures")
    run_ids = {
        api: airflow.trigger_dag(
            DAG_ID, conf={"conn_id": f"cerebelum_failover_{api}", "execution_ids": executions[api]}
        )
        for api in plans
    }
    deferred_tasks = 2 * (SENSORS + EXECUTE_TASKS)
    wait_until(
        lambda: deferred_count(airflow, list(run_ids.values())) == deferred_tasks,
        900,
        f"{deferred_tasks} deferred tasks",
        interval=2,
    )
    # Every deferred task's trigger and the watcher's.
    wait_until(
        lambda: triggers_by_host(airflow) == Counter({victim: deferred_tasks + 1}),
        300,
        f"every trigger assigned to {victim}",
    )
    sensed = {execution_id for ids in executions.values() for execution_id in ids}
    started = set(core.execution_ids()) - sensed
    assert len(started) == 2 * EXECUTE_TASKS  # each execute task started its workflow once
    # The watcher has taken its baseline and stored it in its asset's state store: a watcher that
    # first starts after the kill would count the failures made meanwhile as existing. (Listings
    # alone do not show it: the sensors' shared polls list the same workflow.)
    wait_until(
        lambda: query(
            airflow,
            "SELECT 1 FROM asset_state_store s JOIN asset a ON a.id = s.asset_id WHERE a.name = %s",
            ASSET_NAME,
        ),
        300,
        "the watcher stores its baseline",
    )
    # Only then the survivor wakes, once the victim heartbeats again. A triggerer's first request to
    # Airflow's Execution API (a trigger's connection, the watcher's state store) builds that API in
    # its supervisor, which neither heartbeats nor hears its trigger runner meanwhile: on the loaded
    # CI machine that took 30 s, the runner's watchdog then skipped a heartbeat, and an awake other
    # triggerer started a second copy of the watcher.
    wait_until(lambda: heartbeat_age(airflow, victim) < 5.0, 120, f"{victim} heartbeats")
    airflow.resume_service(survivor)
    [[watcher_id]] = query(airflow, "SELECT trigger_id FROM asset_watcher")
    copies = instances_running(airflow, watcher_id)
    assert copies == {victim: 1, survivor: 0}, trigger_log(airflow, watcher_id)
    holders = triggers_by_host(airflow)
    held = holders[victim]
    [[victim_job]] = query(
        airflow,
        "SELECT t.triggerer_id FROM trigger t JOIN job j ON j.id = t.triggerer_id "
        "WHERE j.hostname = %s LIMIT 1",
        victim,
    )
    calls_before = core.call_counts().get("GetExecutionStatus", 0)
    print(f"triggers by triggerer: {dict(holders)}; killing {victim}", flush=True)

    airflow.kill_service(victim)
    killed_at = time.monotonic()
    # While it is down: every execution settles, half of the sensors' failing.
    for api, plan in plans.items():
        for execution_id, completes in zip(executions[api], plan):
            if completes:
                core.complete(execution_id)
            else:
                core.advance(1, execution_id)
    for execution_id in started:
        core.complete(execution_id)
    failed = {
        execution_id for api in plans for execution_id, ok in zip(executions[api], plans[api]) if not ok
    }
    assert set(core.execution_ids("FAILED")) == failed

    wait_until(
        lambda: not query(airflow, "SELECT 1 FROM trigger WHERE triggerer_id = %s", victim_job),
        HEALTH_CHECK_THRESHOLD + 300,
        f"{survivor} takes over {victim}'s triggers",
        interval=0.2,
    )
    takeover = time.monotonic() - killed_at
    results = airflow.wait_for_runs([(DAG_ID, run_id) for run_id in run_ids.values()], timeout=900)
    finished = time.monotonic() - killed_at

    for api, run_id in run_ids.items():
        instances = task_instances(airflow, run_id)
        for index, completes in enumerate(plans[api]):
            # Never retried: the failover failed no task.
            expected = ("success" if completes else "failed", 1)
            assert instances[("wait", index)] == expected, (api, index)
        for index in range(EXECUTE_TASKS):
            assert instances[("execute", index)] == ("success", 1), (api, index)
        # Ended by Core's answers, never by a deadline (TASK_TIMEOUT is far away).
        assert not results[(DAG_ID, run_id)].succeeded  # the failed executions fail their sensors
    assert core.call_counts()["ExecuteWorkflow"] == 2 * EXECUTE_TASKS  # no workflow started twice

    # Each failed execution gives exactly one asset event, though it failed while its watcher's
    # triggerer may have been the one killed.
    def fired() -> Counter:
        rows = query(
            airflow,
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name = %s",
            ASSET_NAME,
        )
        extras = [json.loads(extra) if isinstance(extra, str) else extra for (extra,) in rows]
        return Counter(extra["payload"]["execution_id"] for extra in extras)

    wait_until(lambda: set(fired()) == failed, 120, "an asset event for every failed execution")
    time.sleep(3 * 5.0)  # three more watcher polls: nothing fires twice
    assert fired() == Counter({execution_id: 1 for execution_id in failed}), trigger_log(airflow, watcher_id)

    status_calls = core.call_counts()["GetExecutionStatus"] - calls_before
    figures = {
        "tasks": deferred_tasks,
        "victim_held": held,
        "takeover_seconds": round(takeover, 1),
        "health_check_threshold": HEALTH_CHECK_THRESHOLD,
        "all_finished_seconds": round(finished, 1),
        "status_calls_after_kill": status_calls,
        "status_calls_per_deferred_task": round(status_calls / deferred_tasks, 2),
    }
    print(f"failover figures: {json.dumps(figures)}")
    if FIGURES:
        Path(FIGURES).write_text(json.dumps(figures))
    assert TASK_TIMEOUT > finished


def test_a_bulk_resume_whose_worker_is_killed_halfway_resumes_each_execution_once(
    airflow: AirflowStack, core: Any
):
    failed = [core.start_execution(BULK_WORKFLOW, fail_at=0) for _ in range(BULK_FAILED)]
    core.advance(1)  # only these run: the first test's executions are settled
    assert set(core.execution_ids("FAILED")) >= set(failed)
    # Each call takes a while, so the kill lands halfway through the list.
    core.set_latency(0.2)
    try:
        run_id = airflow.trigger_dag("e2e_failover_bulk")
        wait_until(
            lambda: sum(core.resume_count(execution_id) for execution_id in failed) >= BULK_FAILED // 2,
            600,
            "half of the executions resumed",
            interval=0.1,
        )
        [ti] = [
            ti for ti in airflow.task_instances("e2e_failover_bulk", run_id) if ti["task_id"] == "resume_all"
        ]
        assert ti["state"] == "running" and ti["pid"], ti
        os.kill(ti["pid"], signal.SIGKILL)
        resumed_before_kill = sum(core.resume_count(execution_id) for execution_id in failed)
        result = airflow.wait_for_run("e2e_failover_bulk", run_id, timeout=600)
    finally:
        core.set_latency(0)

    assert result.succeeded, result
    [ti] = airflow.task_instances("e2e_failover_bulk", run_id)
    assert ti["try_number"] == 2  # the killed try, then its retry
    assert resumed_before_kill < BULK_FAILED  # the kill came before the end
    # What Core recorded: each execution resumed once, none twice, none skipped.
    assert {execution_id: core.resume_count(execution_id) for execution_id in failed} == dict.fromkeys(
        failed, 1
    )
    # The retry resumed what was left (a resume in flight at the kill may have reached Core after
    # it was counted), and no execution both tries resumed.
    summary = airflow.xcom("e2e_failover_bulk", run_id, "resume_all")
    left = BULK_FAILED - resumed_before_kill
    assert left - 1 <= len(summary["resumed"]) <= left, summary
    assert summary["errors"] == {} and summary["not_resumed"] == [], summary
