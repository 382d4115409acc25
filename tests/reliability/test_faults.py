"""Faults survived: Core down, killed, flaky, slow or half-open, and a triggerer restart.

Every test runs the real code paths against an emulator over loopback (in-process, or the
emulator's CLI in a subprocess for SIGKILL) and asserts the outcome and the call counts.
Triggers run through Airflow's own ``TriggerRunner.run_trigger`` (see triggerer.py), rebuilt
from ``serialize()`` as the triggerer rebuilds them. Timeouts bound every test: a hang fails it.

Client-level retries (next-N failures, budget spent, hang -> deadline, one call for auth) are
covered in tests/client/test_client_scripted.py and test_client_emulator.py; the bulk engine on
its own in tests/provider/test_bulk.py. This file adds what only shows end to end.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from cerebelum_provider.client import RetryConfig, SyncExecutionClient
from cerebelum_provider.exceptions import CoreUnavailableError, ErrorCode
from cerebelum_provider.hooks.cerebelum import CerebelumHook
from cerebelum_provider.models import ExecutionState
from cerebelum_provider.operators.cerebelum import CerebelumBulkResumeOperator
from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor
from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger
from tests.reliability.triggerer import TriggererHarness, run_in_triggerer

# Outages, restarts and half-open sockets are waited out in real time.
pytestmark = pytest.mark.waits

BANNER = "Cerebelum Core emulator listening on "


class RecordingTaskInstance:
    """Stands in for ``context["ti"]`` outside a task run: keeps what is pushed to XCom."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def free_port() -> int:
    """A port nothing listens on (bound once by the OS, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_deferrable_sensor(
    sensor: CerebelumExecutionSensor, on_deferred: Callable[[], None] | None = None
) -> tuple[bool, Any]:
    """What a worker and the triggerer do with a deferrable sensor: ``(deferred, result)``.

    ``execute`` runs; if it defers, ``on_deferred`` is called, then the trigger is rebuilt and
    run by ``TriggerRunner`` in a new event loop, and its one event is handed to the method
    named in the deferral.
    """
    from airflow.sdk.exceptions import TaskDeferred

    context = {"ti": RecordingTaskInstance()}
    try:
        return False, sensor.execute(context)
    except TaskDeferred as deferred:
        if on_deferred is not None:
            on_deferred()
        payloads = asyncio.run(run_in_triggerer(deferred.trigger))
        assert len(payloads) == 1, payloads
        return True, getattr(sensor, deferred.method_name)(context, payloads[0])


# Core down when a deferrable sensor starts ---------------------------------------------------

OUTAGES = [
    # (seconds Core stays down once the sensor deferred, or None for never; the unavailable
    # budget; the port closed from the start)
    pytest.param(1.0, 30.0, False, id="stopped-back-within-budget"),
    pytest.param(None, 1.0, False, id="stopped-longer-than-budget"),
    pytest.param(None, 1.0, True, id="port-never-open"),
]


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize(("back_after", "budget", "never_open"), OUTAGES)
def test_core_down_when_a_deferrable_sensor_starts(core, set_connection, back_after, budget, never_open):
    execution_id = core.start_execution("orders")
    core.complete(execution_id)
    address = f"127.0.0.1:{free_port()}" if never_open else core.address
    set_connection(address)
    core.stop()
    restarts: list[threading.Timer] = []

    def come_back_later() -> None:
        if back_after is not None:
            restarts.append(threading.Timer(back_after, core.start))
            restarts[0].start()

    sensor = CerebelumExecutionSensor(
        task_id="wait",
        execution_id=execution_id,
        poll_interval=0.05,
        timeout=60,
        unavailable_timeout=budget,
        deferrable=True,
    )
    try:
        if back_after is not None:
            deferred, result = run_deferrable_sensor(sensor, on_deferred=come_back_later)
            assert deferred  # the first check found Core down: the trigger did the waiting
            assert result["execution_id"] == execution_id
            assert result["status"] == ExecutionState.COMPLETED.value
            assert core.call_counts()["GetExecutionStatus"] >= 1  # answered by the restarted Core
        else:
            with pytest.raises(CoreUnavailableError) as caught:
                run_deferrable_sensor(sensor)
            assert address in str(caught.value)
            assert caught.value.core_address == address
    finally:
        for restart in restarts:
            restart.join()


# Core killed (SIGKILL) and restarted on the same database mid-wait -----------------------------


class EmulatorProcess:
    """The emulator CLI in a subprocess on a fixed port and database file."""

    def __init__(self, port: int, db: Path, scenario: Path, step_seconds: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cerebelum_provider.emulator", "serve", "--port", str(port)]
            + ["--db", str(db), "--scenario", str(scenario), "--step-seconds", str(step_seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        if not line.startswith(BANNER):
            self.process.kill()
            pytest.fail(f"the emulator did not start: {line!r} {self.process.stderr.read()}")
        self.address = line[len(BANNER):].strip()

    def stop(self, signum: int) -> None:
        self.process.send_signal(signum)
        self.process.wait(timeout=30)
        self.process.stdout.close()
        self.process.stderr.close()


KILLED_MID_WAIT = [
    pytest.param({}, "success", "EXECUTION_COMPLETED", id="completes-after-restart"),
    pytest.param(
        {"fail_at": 8, "error_kind": "late_failure"}, "failure", "EXECUTION_FAILED", id="fails-after-restart"
    ),
]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize(("plan", "outcome", "final_state"), KILLED_MID_WAIT)
async def test_core_killed_and_restarted_mid_wait_fires_once_with_the_final_state(
    tmp_path, set_connection, plan, outcome, final_state
):
    execution_id = "killed-mid-wait"
    steps = [f"step_{number}" for number in range(10)]
    scenario = tmp_path / "scenario.json"
    execution = {"workflow": "long", "execution_id": execution_id, **plan}
    scenario.write_text(json.dumps({"workflows": {"long": steps}, "executions": [execution]}))
    port, db = free_port(), tmp_path / "core.sqlite"
    first = EmulatorProcess(port, db, scenario, step_seconds=0.2)
    set_connection(first.address)
    harness = TriggererHarness()
    trigger = CerebelumExecutionTrigger(execution_id, poll_interval=0.05, unavailable_timeout=60)
    waiting = asyncio.create_task(harness.run(trigger))
    probe = SyncExecutionClient(first.address, retry=RetryConfig(max_attempts=1))
    try:
        status = await asyncio.to_thread(probe.get_execution_status, execution_id)
        while status.current_step_index < 2:  # a wait well under way, far from its end
            await asyncio.sleep(0.05)
            status = await asyncio.to_thread(probe.get_execution_status, execution_id)
    finally:
        probe.close()
    assert status.status is ExecutionState.RUNNING and not waiting.done()
    first.stop(signal.SIGKILL)
    await asyncio.sleep(0.5)  # Core is gone for a while; the trigger keeps trying
    assert not waiting.done() and harness.payloads == []
    second = EmulatorProcess(port, db, scenario, step_seconds=0.2)
    try:
        payloads = await asyncio.wait_for(waiting, timeout=90)
    finally:
        second.stop(signal.SIGTERM)
    assert len(payloads) == 1 and harness.counted_events == 1
    event = payloads[0]
    assert (event["status"], event["state"], event["execution_id"]) == (outcome, final_state, execution_id)
    execution = event["execution"]
    if outcome == "success":
        assert execution["current_step_index"] == execution["total_steps"] == len(steps)
    else:
        assert execution["error"]["kind"] == "late_failure"
        assert execution["current_step_index"] == 8


# 30% of calls failing during a bulk resume of 1,000 failed executions -------------------------

BULK_COUNT = 1000


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bulk_resume_of_1000_with_30_percent_unavailable_resumes_each_exactly_once(core, set_connection):
    core.define_workflow("nightly", ["extract", "load"])
    ids = core.load_scenario(
        {"executions": [{"workflow": "nightly", "fail_at": 0, "settle": True, "count": BULK_COUNT}]}
    )
    assert len(ids) == BULK_COUNT and sorted(core.execution_ids(ExecutionState.FAILED)) == sorted(ids)
    # A network this lossy calls for a larger budget: 0.3 ** 20 makes a call failing 20 times in a
    # row practically impossible (0.3 ** 5, the default, would fail about 2 of the 1,000).
    set_connection(core.address, max_attempts=20)
    core.set_failure_rate(0.3, code=grpc.StatusCode.UNAVAILABLE, seed=20261126)
    operator = CerebelumBulkResumeOperator(task_id="bulk", workflow_name="nightly", max_concurrency=16)

    summary = operator.execute({"ti": RecordingTaskInstance()})

    core.set_failure_rate(0)
    calls = core.call_counts()
    assert calls["ResumeExecution"] > BULK_COUNT * 1.2  # the faults really fired, and were retried
    # The emulator fails a call before acting on it, so every execution's one resume is "resumed".
    assert summary == {
        "matched": BULK_COUNT,
        "resumed": summary["resumed"],
        "already_running": [],
        "failed_to_resume": [],
        "not_resumed": [],
        "errors": {},
        "rerun": {},
        "already_rerun": {},
        "would_resume": [],
        "would_rerun": [],
        "dry_run": False,
    }
    assert sorted(summary["resumed"]) == sorted(ids)
    assert [core.resume_count(execution_id) for execution_id in ids] == [1] * BULK_COUNT
    assert core.execution_ids(ExecutionState.FAILED) == []


# Triggerer restart mid-wait --------------------------------------------------------------------


def _settle_completed(core, execution_id: str) -> None:
    core.complete(execution_id)


def _settle_failed(core, execution_id: str) -> None:
    core.run_until_settled(execution_id)


TRIGGERER_RESTARTS = [
    pytest.param({}, _settle_completed, "success", "EXECUTION_COMPLETED", id="completes"),
    pytest.param(
        {"fail_at": "validate", "error_kind": "bad_input"}, _settle_failed, "failure", "EXECUTION_FAILED",
        id="fails",
    ),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("plan", "settle", "outcome", "final_state"), TRIGGERER_RESTARTS)
async def test_triggerer_restart_mid_wait_gives_exactly_one_event(
    core, set_connection, plan, settle: Callable[..., None], outcome, final_state
):
    set_connection(core.address)
    execution_id = core.start_execution("orders", **plan)
    trigger = CerebelumExecutionTrigger(execution_id, poll_interval=0.05)

    old_triggerer = TriggererHarness()
    running = asyncio.create_task(old_triggerer.run(trigger))
    while core.call_counts().get("GetExecutionStatus", 0) < 2:
        await asyncio.sleep(0.01)
    running.cancel()  # the triggerer process goes away
    with pytest.raises(asyncio.CancelledError):
        await running
    assert old_triggerer.payloads == [] and old_triggerer.counted_events == 0

    new_triggerer = TriggererHarness()
    calls_before = core.call_counts()["GetExecutionStatus"]
    restarted = asyncio.ensure_future(asyncio.to_thread(lambda: asyncio.run(new_triggerer.run(trigger))))
    while core.call_counts()["GetExecutionStatus"] < calls_before + 2:  # the new one is waiting too
        await asyncio.sleep(0.01)
    settle(core, execution_id)
    payloads = await asyncio.wait_for(restarted, timeout=30)

    assert len(payloads) == 1 and new_triggerer.counted_events == 1
    event = payloads[0]
    assert (event["status"], event["state"], event["execution_id"]) == (outcome, final_state, execution_id)
    if outcome == "failure":
        assert "bad_input" in event["message"]


# A Core slower than the deadline, and a half-open network -------------------------------------

SLOW_CORES = [
    pytest.param(lambda core: core.set_latency(1.0), id="slower-than-deadline"),
    pytest.param(lambda core: core.hang(True), id="half-open"),
]
DEADLINE = 0.2


@pytest.mark.timeout(30)
@pytest.mark.parametrize("make_slow", SLOW_CORES)
def test_slow_or_silent_core_is_retried_then_fails_clearly(core, set_connection, make_slow):
    execution_id = core.start_execution("orders")
    conn_id = set_connection(core.address, timeout=DEADLINE)
    make_slow(core)
    hook = CerebelumHook(conn_id, retry=RetryConfig(max_attempts=3, initial_backoff=0.01, max_backoff=0.02))
    with hook.get_client() as client, pytest.raises(CoreUnavailableError) as caught:
        client.get_execution_status(execution_id)
    assert core.call_counts() == {"GetExecutionStatus": 3}  # DEADLINE_EXCEEDED is retried, then it stops
    message = str(caught.value)
    assert "DEADLINE_EXCEEDED" in message and core.address in message and "3 attempts" in message
    assert caught.value.code == ErrorCode.DEADLINE_EXCEEDED


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_half_open_core_never_hangs_a_trigger(core, set_connection):
    execution_id = core.start_execution("orders")
    set_connection(core.address, timeout=DEADLINE)
    core.hang(True)
    started = time.monotonic()
    payloads = await run_in_triggerer(
        CerebelumExecutionTrigger(execution_id, poll_interval=0.05, unavailable_timeout=0.3)
    )
    elapsed = time.monotonic() - started
    assert len(payloads) == 1
    event = payloads[0]
    assert (event["status"], event["error_type"]) == ("error", "CoreUnavailableError")
    assert "DEADLINE_EXCEEDED" in event["message"] and core.address in event["message"]
    # One poll, one client call of 5 attempts that all hit the deadline: the outage counts from the
    # start of that first failed check, which outlasts the 0.3 s budget by itself.
    assert core.call_counts() == {"GetExecutionStatus": 5}
    assert elapsed < 45  # bounded by deadlines and the budget, not by the test timeout
