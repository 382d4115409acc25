"""The event log on disk: restarts (even after SIGKILL) answer exactly as before; the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest

from cerebelum_provider.emulator import CoreEmulator
from cerebelum_provider.proto import worker_service_pb2 as pb
from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

BANNER = "Cerebelum Core emulator listening on "


def snapshot(address):
    """Every execution as GetExecutionStatus answers it, plus the listing order."""
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.WorkerServiceStub(channel)
        listing = stub.ListExecutions(pb.ListExecutionsRequest(limit=100), timeout=10)
        ids = [execution.execution_id for execution in listing.executions]
        statuses = {
            execution_id: stub.GetExecutionStatus(
                pb.GetExecutionStatusRequest(execution_id=execution_id), timeout=10
            ).SerializeToString(deterministic=True)
            for execution_id in ids
        }
    return ids, statuses


def resume(address, execution_id):
    with grpc.insecure_channel(address) as channel:
        return (
            pb_grpc.WorkerServiceStub(channel)
            .ResumeExecution(pb.ResumeExecutionRequest(execution_id=execution_id), timeout=10)
            .status
        )


def test_stop_and_start_on_the_same_file_answers_the_same(tmp_path):
    db = str(tmp_path / "core.sqlite")
    with CoreEmulator(db_path=db, demo=True) as core:
        core.advance_time(5)
        assert resume(core.address, "demo-orders-failed") == "resumed"
        core.corrupt("demo-billing-completed")
        before = snapshot(core.address)
        address = core.address
        core.stop()
        core.start()
        assert core.address == address
        assert snapshot(core.address) == before
        assert core.resume_count("demo-orders-failed") == 1
    with CoreEmulator(db_path=tmp_path / "core.sqlite", demo=True) as reopened:
        assert snapshot(reopened.address) == before


def test_manual_clock_never_runs_behind_a_log_written_on_real_time(tmp_path):
    db = str(tmp_path / "core.sqlite")
    with CoreEmulator(db_path=db, step_seconds=3600) as live:
        time.sleep(0.05)
        execution_id = live.start_execution("orders", sleep_at=0, sleep_ms=60_000)
        live.advance(1, execution_id)
    with CoreEmulator(db_path=db) as manual:
        sleeping = manual.status(execution_id)
        assert sleeping.sleep_info.remaining_ms == 60_000
        manual.advance_time(60)
        assert manual.status(execution_id).current_step_index == 1


class ServeProcess:
    """``python -m cerebelum_provider.emulator serve`` in a subprocess, with its printed address."""

    def __init__(
        self, *args: str, command: Sequence[str] = (sys.executable, "-m", "cerebelum_provider.emulator")
    ):
        self.process = subprocess.Popen(
            [*command, "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self._first_line(timeout=30)
        assert line.startswith(BANNER), line
        self.address = line[len(BANNER) :].strip()

    def _first_line(self, timeout: float) -> str:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not lines:
            self.process.kill()
            pytest.fail(f"the emulator printed nothing within {timeout}s: {self.process.stderr.read()}")
        return lines[0]

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=30)
        finally:
            self.process.stdout.close()
            self.process.stderr.close()


def test_sigkill_mid_run_loses_nothing_acknowledged(tmp_path):
    db = str(tmp_path / "core.sqlite")
    first = ServeProcess("--db", db, "--demo")
    assert resume(first.address, "demo-billing-failed") == "resumed"
    before = snapshot(first.address)
    assert len(before[0]) == 9
    first.stop(signal.SIGKILL)
    second = ServeProcess("--db", db, "--demo")
    try:
        assert snapshot(second.address) == before
        assert resume(second.address, "demo-billing-failed") == "already_running"
    finally:
        assert second.stop(signal.SIGTERM) == 0


def test_sigkill_while_executions_move_in_real_time_loses_nothing_acknowledged(tmp_path):
    db = str(tmp_path / "core.sqlite")
    first = ServeProcess("--db", db, "--demo", "--step-seconds", "0.05")
    with grpc.insecure_channel(first.address) as channel:
        handle = pb_grpc.WorkerServiceStub(channel).ExecuteWorkflow(
            pb.ExecuteRequest(workflow_module="orders"), timeout=10
        )
    assert resume(first.address, "demo-orders-failed") == "resumed"
    before = {
        execution_id: pb.ExecutionStatus.FromString(status)
        for execution_id, status in snapshot(first.address)[1].items()
    }
    first.stop(signal.SIGKILL)
    second = ServeProcess("--db", db)
    try:
        after = {
            execution_id: pb.ExecutionStatus.FromString(status)
            for execution_id, status in snapshot(second.address)[1].items()
        }
        assert after.keys() == before.keys() and handle.execution_id in after
        for execution_id, status in before.items():
            assert after[execution_id].current_step_index >= status.current_step_index, execution_id
        assert after["demo-orders-failed"].status != pb.EXECUTION_FAILED
        assert resume(second.address, "demo-orders-failed") != "resumed"
    finally:
        assert second.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_prints_its_real_address_and_exits_0_on_a_stop_signal(signum):
    served = ServeProcess()
    host, port = served.address.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    assert snapshot(served.address) == ([], {})
    assert served.stop(signum) == 0


def test_console_script_serves_too():
    served = ServeProcess(command=[str(Path(sys.executable).with_name("cerebelum-emulator"))])
    assert snapshot(served.address) == ([], {})
    assert served.stop(signal.SIGTERM) == 0


def test_cli_refuses_a_step_time_that_is_not_positive():
    result = subprocess.run(
        [sys.executable, "-m", "cerebelum_provider.emulator", "serve", "--step-seconds", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "--step-seconds must be > 0, got 0.0" in result.stderr


def test_cli_seeds_a_scenario_file(tmp_path):
    scenario = tmp_path / "scenario.json"
    scenario.write_text(
        '{"executions": [{"workflow": "w", "execution_id": "one", "fail_at": 0, "settle": true}]}'
    )
    served = ServeProcess("--scenario", str(scenario))
    try:
        ids, statuses = snapshot(served.address)
        assert ids == ["one"]
        assert pb.ExecutionStatus.FromString(statuses["one"]).status == pb.EXECUTION_FAILED
    finally:
        assert served.stop(signal.SIGTERM) == 0


def test_cli_refuses_a_port_in_use(core):
    port = core.address.rsplit(":", 1)[1]
    result = subprocess.run(
        [sys.executable, "-m", "cerebelum_provider.emulator", "serve", "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode != 0
    assert f"could not listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize(
    "content", [None, b"not a database at all, just some text" * 100], ids=["no-dir", "garbage"]
)
def test_cli_refuses_a_db_it_cannot_open(tmp_path, content):
    db = tmp_path / "missing-dir" / "core.sqlite"
    if content is not None:
        db = tmp_path / "core.sqlite"
        db.write_bytes(content)
    result = subprocess.run(
        [sys.executable, "-m", "cerebelum_provider.emulator", "serve", "--port", "0", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"cannot open the event log '{db}'" in result.stderr
