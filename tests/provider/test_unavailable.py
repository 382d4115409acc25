"""Core unreachable during a wait: ridden out for ``unavailable_timeout`` (15 minutes by default),
then the task fails saying since when (UTC) and at which address, the time counted from the start
of the first failed check.

Against the emulator (refusing calls, or stopped) and a port nothing listens on; each connection
sets ``max_attempts=1`` so that one check is one call, with no client retry in between.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime, timezone

import grpc
import pytest

from cerebelum_provider._outage import DEFAULT_UNAVAILABLE_TIMEOUT, Outage
from cerebelum_provider.exceptions import CoreBusyError, CoreUnavailableError, ErrorCode
from cerebelum_provider.operators.cerebelum import (
    CerebelumExecuteWorkflowOperator,
    CerebelumResumeExecutionOperator,
)
from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor
from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger
from tests.core_apis import connection_uri
from tests.dagrun import run_dag

pytestmark = pytest.mark.timeout(120)

#: 2026-01-31 12:00:00 UTC.
EPOCH = datetime(2026, 1, 31, 12, 0, 0, tzinfo=timezone.utc).timestamp()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Clock:
    """A clock the test moves: ``monotonic`` and ``wall`` advance together."""

    def __init__(self) -> None:
        self.monotonic = 1000.0
        self.wall = EPOCH

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.wall += seconds


def test_an_outage_counts_from_the_start_of_the_first_failed_check():
    clock = Clock()
    outage = Outage(60.0, monotonic=lambda: clock.monotonic, wall_clock=lambda: clock.wall)

    outage.attempt()
    clock.advance(9)  # the check itself took 9 s (the client's own retries) before it failed
    outage.failed()
    assert outage.elapsed == 9 and outage.remaining == 51 and not outage.exhausted
    assert outage.describe("127.0.0.1:4001") == (
        "Cerebelum Core at 127.0.0.1:4001 unreachable since 2026-01-31 12:00:00 UTC (9s, 1 failed check)"
    )
    outage.attempt()  # a later check does not move the start
    clock.advance(51)
    outage.failed()
    assert outage.exhausted and outage.failures == 2
    assert "since 2026-01-31 12:00:00 UTC (60s, 2 failed checks)" in outage.describe("a")

    outage.ended()
    assert not outage.ongoing and outage.elapsed == 0 and not outage.exhausted


def test_an_outage_says_whether_core_was_unreachable_busy_or_rate_limiting_at_the_last_check():
    clock = Clock()
    outage = Outage(60.0, monotonic=lambda: clock.monotonic, wall_clock=lambda: clock.wall)
    seen = []
    for error in (
        CoreUnavailableError("refused", code=ErrorCode.UNAVAILABLE),
        CoreBusyError("HTTP 500", transport_code=500),
        CoreUnavailableError("HTTP 429", transport_code=429),
    ):
        outage.attempt()
        outage.failed(error)
        seen.append(outage.describe("a").split(" since ")[0])
    assert seen == [
        "Cerebelum Core at a unreachable",
        "Cerebelum Core at a busy",
        "Cerebelum Core at a rate-limiting this client",
    ]


def test_an_outage_begun_before_a_deferral_is_counted_from_then():
    clock = Clock()
    outage = Outage(60.0, monotonic=lambda: clock.monotonic, wall_clock=lambda: clock.wall)
    outage.started_earlier(EPOCH - 45)
    assert outage.elapsed == 45 and outage.remaining == 15
    assert "since 2026-01-31 11:59:15 UTC" in outage.describe("a")


def test_the_waits_default_to_a_fifteen_minute_budget():
    assert DEFAULT_UNAVAILABLE_TIMEOUT == 900
    assert CerebelumExecutionSensor(task_id="s", execution_id="x").unavailable_timeout == 900
    assert CerebelumExecutionTrigger("x").unavailable_timeout == 900
    for operator in (
        CerebelumExecuteWorkflowOperator(task_id="e", workflow_name="orders"),
        CerebelumResumeExecutionOperator(task_id="r", execution_id="x"),
    ):
        assert operator.unavailable_timeout == 900
    assert (
        CerebelumExecutionSensor(task_id="s", execution_id="x", unavailable_timeout=None).unavailable_timeout
        is None
    )


def test_a_wait_in_the_worker_rides_out_an_outage_shorter_than_the_budget(
    core_factory, monkeypatch, airflow_db
):
    core = core_factory(step_seconds=0.05)
    core.define_workflow("orders", ["a", "b"])
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, max_attempts=1))
    # Three status checks in a row find Core unavailable (no client retry: max_attempts=1).
    core.fail_next(3, code=grpc.StatusCode.UNAVAILABLE, rpcs="GetExecutionStatus")

    _, results = run_dag("cerebelum_execute_outage")

    assert results["execute"][0] == "success"
    assert core.call_counts()["ExecuteWorkflow"] == 1
    assert core.call_counts()["GetExecutionStatus"] >= 4


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_a_sensor_at_a_closed_port_fails_after_the_budget_saying_since_when_and_where(
    monkeypatch, airflow_db, deferrable, capfd
):
    port = closed_port()
    monkeypatch.setenv(
        "AIRFLOW_CONN_CEREBELUM_DEFAULT", f"cerebelum://127.0.0.1:{port}?api=http&max_attempts=1"
    )
    started = datetime.now(timezone.utc).replace(microsecond=0)

    _, results = run_dag(f"cerebelum_sensor_outage_{'deferrable' if deferrable else 'poke'}")

    assert results["wait"][0] == "failed"
    output = capfd.readouterr().out
    line = next(line for line in output.splitlines() if "unreachable since" in line and "longer than" in line)
    assert f"Cerebelum Core at http://127.0.0.1:{port} unreachable since " in line
    assert "while waiting for execution exec-1, longer than unavailable_timeout (0.5s)" in line
    since = datetime.strptime(line.split("unreachable since ")[1][:19], "%Y-%m-%d %H:%M:%S")
    assert since.replace(tzinfo=timezone.utc) >= started


def test_a_trigger_counts_an_outage_from_the_task_first_failed_check(monkeypatch):
    port = closed_port()
    monkeypatch.setenv(
        "AIRFLOW_CONN_CEREBELUM_DEFAULT", f"cerebelum://127.0.0.1:{port}?api=http&max_attempts=1"
    )
    # The task found Core unreachable 20 minutes before it deferred: the budget is already spent.
    trigger = CerebelumExecutionTrigger(
        "exec-1", poll_interval=0.05, unavailable_timeout=900, unavailable_since=EPOCH
    )
    trigger._now = lambda: EPOCH + 1200  # type: ignore[method-assign]

    async def only_event() -> dict:
        return [event.payload async for event in trigger.run()][0]

    event = asyncio.run(only_event())

    assert (event["status"], event["error_type"]) == ("error", "CoreUnavailableError")
    assert event["message"].startswith(
        f"Cerebelum Core at http://127.0.0.1:{port} unreachable since 2026-01-31 12:00:00 UTC (1200s, 1 failed check) "
        "while waiting for execution exec-1, longer than unavailable_timeout (900s)"
    )
