"""A busy Core and the caller's deadline, against the emulator over Core's REST API.

The released Core (be56c90) answers a REST status read with HTTP 500 and Phoenix's bare
``{"errors": {"detail": "Internal Server Error"}}`` while one of its engines is busy past 5 s
(``CoreEmulator.engine_busy``): every wait rides that out within its unavailability budget, and
fails with Core's text past it. Core's rate limiter never holds a wait past its task's deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import pytest

from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger
from tests.core_apis import connection_uri, core_url
from tests.dagrun import output_of, run_dag
from tests.provider.dags.cerebelum_sensor_dags import SENSOR_TIMEOUT
from tests.provider.test_sensor import run_sensor_dag

pytestmark = pytest.mark.timeout(120)

CORES_TEXT = "{'errors': {'detail': 'Internal Server Error'}}"


def trigger_events(trigger: CerebelumExecutionTrigger) -> list[dict]:
    """Run the trigger rebuilt from ``serialize()``, as the triggerer does; every event payload."""
    _, kwargs = trigger.serialize()

    async def run() -> list[dict]:
        return [event.payload async for event in CerebelumExecutionTrigger(**kwargs).run()]

    return asyncio.run(run())


def said(capfd, caplog) -> list[str]:
    """Every line logged: the trigger's (Airflow's structured log, on stdout) and the client's."""
    return capfd.readouterr().out.splitlines() + [record.getMessage() for record in caplog.records]


def test_a_trigger_rides_out_a_busy_engine_warning_with_cores_text(core, monkeypatch, capfd, caplog):
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, max_attempts=1))
    execution_id = core.start_execution("orders")
    core.complete(execution_id)
    core.engine_busy(1.0)
    caplog.set_level(logging.WARNING)

    events = trigger_events(
        CerebelumExecutionTrigger(execution_id, poll_interval=0.05, unavailable_timeout=60)
    )

    assert [(event["status"], event["state"]) for event in events] == [("success", "EXECUTION_COMPLETED")]
    lines = said(capfd, caplog)
    busy = [line for line in lines if "warning" in line and CORES_TEXT in line and "busy past 5 s" in line]
    assert busy, lines
    # Busy, not unreachable: Core answered, saying so.
    assert all(f"Cerebelum Core at {core_url(core)} busy since " in line for line in busy), busy
    assert core.call_counts()["GetExecutionStatus"] == len(busy) + 1


def test_a_trigger_fails_with_cores_text_when_the_engine_stays_busy_past_the_budget(core, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, max_attempts=1))
    execution_id = core.start_execution("orders")
    core.engine_busy(600)

    events = trigger_events(
        CerebelumExecutionTrigger(execution_id, poll_interval=0.05, unavailable_timeout=0.5)
    )

    assert [(event["status"], event["error_type"]) for event in events] == [("error", "CoreBusyError")]
    message = events[0]["message"]
    assert "longer than unavailable_timeout (0.5s)" in message and CORES_TEXT in message
    assert "busy since " in message and "unreachable" not in message


def test_a_wait_in_the_worker_rides_out_a_busy_engine(core_factory, monkeypatch, airflow_db):
    core = core_factory(step_seconds=0.05)
    core.define_workflow("orders", ["a", "b"])
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, max_attempts=1))
    core.engine_busy(1.0)

    _, results = run_dag("cerebelum_execute_outage")

    assert results["execute"][0] == "success"
    assert core.call_counts()["ExecuteWorkflow"] == 1


def test_a_poking_sensor_fails_with_cores_text_past_the_budget(core, monkeypatch, airflow_db, capfd):
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, max_attempts=1))
    core.engine_busy(600)

    _, results = run_dag("cerebelum_sensor_outage_poke")

    assert results["wait"][0] == "failed"
    output = capfd.readouterr().out
    line = next(line for line in output.splitlines() if "longer than unavailable_timeout" in line)
    assert "while waiting for execution exec-1" in line and CORES_TEXT in line
    assert f"Cerebelum Core at {core_url(core)} busy since " in line


def test_a_trigger_never_waits_for_a_rate_limit_window_past_its_deadline(core, monkeypatch, capfd, caplog):
    # Two attempts per call, then a wait for Core's next window (1 s and more here): past the deadline.
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, max_attempts=2))
    execution_id = core.start_execution("orders")
    core.set_failure_rate(1.0, code=grpc.StatusCode.RESOURCE_EXHAUSTED, rpcs="GetExecutionStatus")
    caplog.set_level(logging.WARNING)

    events = trigger_events(
        CerebelumExecutionTrigger(execution_id, poll_interval=0.05, end_time=time.time() + 1.0)
    )

    assert [(event["status"], event["error_type"]) for event in events] == [("error", "CoreUnavailableError")]
    # The retry's backoff is random, so the deadline ends the wait in one of several ways (the next
    # window opens after it, it ended the call, or it had passed before a retry): never by a wait.
    [message] = [event["message"] for event in events]
    assert "the caller's deadline" in message, message
    assert not [line for line in said(capfd, caplog) if "is rate-limiting this client" in line]


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_a_poking_sensor_that_meets_a_429_ends_at_its_timeout_not_after_the_window(
    core, monkeypatch, airflow_db, capfd, mode
):
    # The first check passes; every later one is refused by a window that never turns, so only the
    # sensor's own deadline can end the wait (Core's next window is a calendar minute away at most).
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core))
    execution_id = core.start_execution("orders")
    core.set_rate_limit(1, window_seconds=None)

    state, _ = run_sensor_dag(mode, execution_id, short_timeout=True)

    assert state == "failed"
    assert core.rate_limited_count() >= 1
    output = output_of(capfd)
    # What ended it: the sensor's timeout, which the client's calls kept to (never Airflow's generic
    # timeout, found after a poke that outlasted it).
    ended = [line for line in output.splitlines() if "AirflowSensorTimeout: " in line]
    assert ended, output[-3000:]
    assert f"the sensor's timeout ({SENSOR_TIMEOUT:g}s) leaves no time for another check" in ended[-1]
    assert "the caller's deadline" in ended[-1]
    assert "Sensor has timed out" not in output
    # Without the deadline the client waits out three windows: Core's next one is a minute away.
    assert "(wait 2 of" not in output


@pytest.mark.parametrize("mode", ["poll", "deferrable"])
def test_an_operators_wait_that_meets_a_429_ends_at_its_timeout(core, monkeypatch, airflow_db, capfd, mode):
    # The start passes; every status read after it is refused by a window that never turns: the
    # wait in the worker, and the one check before a deferral, end by the operator's 1 s timeout.
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core))
    core.set_rate_limit(1, window_seconds=None)

    _, results = run_dag(f"cerebelum_execute_timeout_{mode}")

    assert results["execute"][0] == "failed"
    assert core.call_counts()["ExecuteWorkflow"] == 1
    assert core.rate_limited_count() >= 1
    (execution_id,) = core.execution_ids()
    output = output_of(capfd)
    ended = [line for line in output.splitlines() if "CoreUnavailableError: " in line]
    assert ended, output[-3000:]
    assert f"while waiting for execution {execution_id}" in ended[-1]
    assert "the caller's deadline" in ended[-1]
    assert "(wait 2 of" not in output
