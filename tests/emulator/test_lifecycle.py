"""Executions that live: steps, failures and resumes, sleeps, approvals, real time, seeding."""

from __future__ import annotations

import json
import time

import grpc
import pytest

from cerebelum_provider.emulator import DEFAULT_TIMELINE
from cerebelum_provider.emulator.events import fold
from cerebelum_provider.exceptions import ExecutionNotFoundError
from cerebelum_provider.models import ExecutionState
from cerebelum_provider.proto import worker_service_pb2 as pb
from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

ORDERS = ["validate", "charge", "ship", "notify"]


@pytest.fixture(autouse=True)
def orders_workflow(core):
    core.define_workflow("orders", ORDERS)


def state(core, execution_id):
    return core.status(execution_id).status


def test_failed_execution_resumes_from_the_failed_step_and_completes(core):
    execution_id = core.start_execution("orders", fail_at="ship", error_kind="carrier", error_message="503")
    core.run_until_settled(execution_id)
    failed = core.status(execution_id)
    assert (failed.status, failed.current_step_name) == (ExecutionState.FAILED, "ship")
    assert failed.error == {"kind": "carrier", "message": "503", "stacktrace": ""}
    assert core.engine.resume(execution_id) == "resumed"
    resumed = core.status(execution_id)
    assert (resumed.status, resumed.current_step_index, resumed.error) == (ExecutionState.RUNNING, 2, None)
    core.run_until_settled(execution_id)
    assert state(core, execution_id) is ExecutionState.COMPLETED
    assert core.resume_count(execution_id) == 1
    assert sorted(core.status(execution_id).step_outputs) == sorted(ORDERS)


def test_fail_times_makes_the_step_fail_that_many_attempts(core):
    execution_id = core.start_execution("orders", fail_at=1, fail_times=2)
    core.run_until_settled(execution_id)
    core.engine.resume(execution_id)
    core.run_until_settled(execution_id)
    assert state(core, execution_id) is ExecutionState.FAILED
    core.engine.resume(execution_id)
    core.run_until_settled(execution_id)
    assert state(core, execution_id) is ExecutionState.COMPLETED
    assert core.resume_count(execution_id) == 2


def test_sleep_lasts_until_the_clock_passes_it(core):
    execution_id = core.start_execution("orders", sleep_at="charge", sleep_ms=30_000)
    core.run_until_settled(execution_id)
    sleeping = core.status(execution_id)
    assert (sleeping.status, sleeping.current_step_name) == (ExecutionState.SLEEPING, "charge")
    assert sleeping.sleep_info.duration_ms == 30_000
    core.advance(5)
    core.advance_time(29.999)
    assert core.status(execution_id).sleep_info.remaining_ms == 1
    core.advance_time(0.001)
    woke = core.status(execution_id)
    assert (woke.status, woke.current_step_name, woke.sleep_info) == (ExecutionState.RUNNING, "ship", None)


def test_approval_waits_until_approved(core):
    execution_id = core.start_execution("orders", approval_at="ship", approval_timeout_ms=600_000)
    core.run_until_settled(execution_id)
    waiting = core.status(execution_id)
    assert (waiting.status, waiting.current_step_name) == (ExecutionState.WAITING_FOR_APPROVAL, "ship")
    assert (waiting.approval_info.approval_type, waiting.approval_info.timeout_ms) == ("manual", 600_000)
    core.advance(3)
    assert state(core, execution_id) is ExecutionState.WAITING_FOR_APPROVAL
    core.approve(execution_id)
    approved = core.status(execution_id)
    assert (approved.status, approved.current_step_name, approved.approval_info) == (
        ExecutionState.RUNNING,
        "notify",
        None,
    )
    with pytest.raises(ValueError, match="not WAITING_FOR_APPROVAL"):
        core.approve(execution_id)


def test_advance_moves_each_running_execution_by_the_given_steps(core):
    first, second = core.start_execution("orders"), core.start_execution("orders")
    core.advance(2)
    core.advance(1, execution_id=first)
    assert (core.status(first).current_step_index, core.status(second).current_step_index) == (3, 2)


def test_complete_forces_completion(core):
    execution_id = core.start_execution("orders", fail_at=0)
    core.advance(1)
    core.complete(execution_id)
    completed = core.status(execution_id)
    assert (completed.status, completed.current_step_index, completed.error) == (
        ExecutionState.COMPLETED,
        4,
        None,
    )


def test_unknown_names_get_the_default_timeline_unless_strict(core, core_factory):
    execution_id = core.start_execution("anything")
    assert core.status(execution_id).total_steps == len(DEFAULT_TIMELINE) == 4
    strict = core_factory(accept_any_workflow=False)
    with pytest.raises(ValueError, match="unknown workflow 'anything'"):
        strict.start_execution("anything")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fail_at": "nope"}, ValueError, "fail_at='nope' is not a step"),
        ({"sleep_at": 9}, ValueError, "sleep_at=9 is out of range"),
        ({"fail_times": -1}, ValueError, "fail_times must be an int"),
        ({"inputs": [1, 2]}, TypeError, "inputs must be a dict"),
        ({"approval_at": 1.5}, TypeError, "approval_at must be a step name or index"),
    ],
)
def test_bad_start_arguments_are_refused_before_anything_is_written(core, kwargs, error, match):
    with pytest.raises(error, match=match):
        core.start_execution("orders", **kwargs)
    assert core.execution_ids() == []


@pytest.mark.parametrize(
    ("workflow", "kwargs", "match"),
    [
        (123, {}, "workflow_name must be a non-empty string, got 123"),
        ("", {}, "workflow_name must be a non-empty string"),
        ("orders", {"execution_id": ""}, "execution_id must be a non-empty string or None"),
    ],
)
def test_bad_names_and_ids_are_refused(core, workflow, kwargs, match):
    with pytest.raises(ValueError, match=match):
        core.start_execution(workflow, **kwargs)
    existing = core.start_execution("orders", execution_id="taken")
    with pytest.raises(ValueError, match="execution id 'taken' is already taken"):
        core.start_execution("orders", execution_id=existing)


def test_status_of_an_unknown_id_raises_not_found(core):
    with pytest.raises(ExecutionNotFoundError, match="Execution ghost not found"):
        core.status("ghost")


def test_execution_ids_filter_by_state(core):
    running = core.start_execution("orders")
    failed = core.start_execution("orders", fail_at=0)
    core.advance(1, failed)
    assert core.execution_ids() == [running, failed]
    assert core.execution_ids("FAILED") == [failed]
    assert core.execution_ids(ExecutionState.RUNNING) == [running]
    assert core.execution_ids("PAUSED") == []


def test_every_projection_equals_a_replay_of_its_events(core):
    ids = [
        core.start_execution("orders", fail_at=1),
        core.start_execution("orders", sleep_at=2, sleep_ms=1000),
        core.start_execution("orders", approval_at=0),
        core.start_execution("orders"),
    ]
    core.run_until_settled()
    core.engine.resume(ids[0])
    core.advance_time(2)
    core.approve(ids[2])
    core.advance(1)
    core.corrupt(ids[3])
    for execution_id in ids:
        assert core.engine.replay_execution(execution_id) == core.engine.get(execution_id)
    assert fold([]) is None


def test_real_time_moves_executions_and_wakes_sleeps(core_factory):
    live = core_factory(step_seconds=0.02)
    running = live.start_execution("orders")
    sleeper = live.start_execution("orders", sleep_at=0, sleep_ms=50)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and {state(live, running), state(live, sleeper)} != {
        ExecutionState.COMPLETED
    }:
        time.sleep(0.02)
    assert state(live, running) is ExecutionState.COMPLETED
    assert state(live, sleeper) is ExecutionState.COMPLETED
    assert live.engine.replay_execution(sleeper).slept_at == frozenset({0})


def test_scenario_seeds_workflows_and_scripted_executions(core):
    scenario = {
        "workflows": [{"name": "etl", "steps": ["extract", "transform", "load"]}],
        "executions": [
            {"workflow": "etl", "execution_id": "etl-failed", "fail_at": "load", "settle": True},
            {"workflow": "etl", "execution_id": "etl-bulk", "advance": 1, "count": 3, "inputs": {"n": 1}},
        ],
    }
    assert core.load_scenario(scenario) == ["etl-failed", "etl-bulk-1", "etl-bulk-2", "etl-bulk-3"]
    assert core.load_scenario(scenario) == []
    assert state(core, "etl-failed") is ExecutionState.FAILED
    assert [core.status(f"etl-bulk-{n}").current_step_name for n in (1, 2, 3)] == ["transform"] * 3


@pytest.mark.parametrize(
    ("scenario", "match"),
    [
        ({"executions": [{"workflow": "orders", "sleeps_at": 1}]}, "unknown keys \\['sleeps_at'\\]"),
        ({"execution": []}, "unknown scenario keys"),
        ({"workflows": ["orders"]}, "'workflows' must map names"),
        ({"executions": [{"workflow": "orders", "count": 0}]}, "count must be an int >= 1"),
    ],
)
def test_malformed_scenarios_are_refused(core, scenario, match):
    with pytest.raises(ValueError, match=match):
        core.load_scenario(scenario)


def test_scenario_file_is_read_by_the_constructor(core_factory, tmp_path):
    path = tmp_path / "scenario.json"
    path.write_text(
        json.dumps({"executions": [{"workflow": "w", "execution_id": "a", "approval_at": 0, "settle": True}]})
    )
    from cerebelum_provider.emulator.scenario import load_scenario_file

    seeded = core_factory(scenario_data=load_scenario_file(path))
    assert state(seeded, "a") is ExecutionState.WAITING_FOR_APPROVAL


def test_demo_set_has_every_state_in_two_workflows_and_is_seeded_once(core_factory):
    demo = core_factory(demo=True)
    statuses = [demo.status(execution_id) for execution_id in demo.execution_ids()]
    assert {status.workflow_name for status in statuses} == {"orders", "billing"}
    assert {status.status for status in statuses} == {
        ExecutionState.RUNNING,
        ExecutionState.SLEEPING,
        ExecutionState.WAITING_FOR_APPROVAL,
        ExecutionState.COMPLETED,
        ExecutionState.FAILED,
    }
    count = len(statuses)
    from cerebelum_provider.emulator.scenario import seed_demo

    assert seed_demo(demo.engine) == []
    assert len(demo.execution_ids()) == count
    for failed in demo.execution_ids("FAILED"):
        assert demo.engine.resume(failed) == "resumed"
    demo.run_until_settled()
    assert demo.execution_ids("FAILED") == []


async def test_emulator_serves_an_asyncio_client_on_another_loop(core):
    execution_id = core.start_execution("orders")
    async with grpc.aio.insecure_channel(core.address) as channel:
        answer = await pb_grpc.WorkerServiceStub(channel).GetExecutionStatus(
            pb.GetExecutionStatusRequest(execution_id=execution_id), timeout=5
        )
    assert answer.current_step_name == "validate"


def test_stop_does_not_wait_on_a_handler_that_reads_the_engine_as_it_begins(core_factory, monkeypatch):
    """CI hung twice in a teardown: stop() held the emulator's lock while waiting for its loop to shut
    down, and a request handled on that loop at that moment waited for the same lock to read the
    engine. Here the loop reads the engine 0.3 s after stop() has begun, as such a handler does."""
    from cerebelum_provider.emulator import server as emulator_server

    monkeypatch.setattr(emulator_server, "_START_TIMEOUT", 5.0)
    emulator = core_factory()
    emulator.define_workflow("orders", ORDERS)
    execution_id = emulator.start_execution("orders")
    read: list[str] = []

    def handler_reading_the_engine() -> None:
        time.sleep(0.3)  # stop() is waiting by now
        read.append(emulator.engine.get(execution_id).workflow_name)

    emulator._loop.call_soon_threadsafe(handler_reading_the_engine)
    started = time.monotonic()
    emulator.stop()  # raised RuntimeError ("did not shut down within 5 s") before the fix
    assert time.monotonic() - started < 5
    assert read == ["orders"]
    emulator.start()  # and it serves again, the same executions
    with grpc.insecure_channel(emulator.address) as channel:
        answer = pb_grpc.WorkerServiceStub(channel).GetExecutionStatus(
            pb.GetExecutionStatusRequest(execution_id=execution_id), timeout=5
        )
    assert answer.workflow_name == "orders"
