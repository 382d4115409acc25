"""Odd answers from Core, over a real wire, never crash the client or the sensor.

tests/client/test_convert.py proves the converter on messages decoded from bytes (Hypothesis,
plus huge Structs, NaN, unknown enum numbers, missing timestamps). Here the same odd answers
travel over gRPC: the emulator itself returns huge and NaN-carrying inputs, and a grpc.aio
server (tests/client/scripted_core.py) answers Hypothesis-generated status messages, so the
channel limits and the decoding path are the real ones.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings

from cerebelum_provider.client import RetryConfig, SyncExecutionClient
from cerebelum_provider.exceptions import ExecutionNotFoundError
from cerebelum_provider.models import ExecutionState, ExecutionStatus
from cerebelum_provider.proto import worker_service_pb2 as pb
from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor
from tests.client.scripted_core import ScriptedCore
from tests.client.test_convert import status_messages

ONE_ATTEMPT = RetryConfig(max_attempts=1)
# Above gRPC's default 4 MiB receive limit: the client's channel must allow it.
HUGE_KEYS = 60_000


def huge_inputs() -> dict:
    return {f"key_{number:05d}": {"text": "x" * 60, "n": number + 0.5} for number in range(HUGE_KEYS)}


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_emulator_answers_a_huge_struct_with_nan_and_infinity(core):
    inputs = {**huge_inputs(), "nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "int": 7}
    execution_id = core.start_execution("orders", inputs=inputs)
    core.complete(execution_id)
    with SyncExecutionClient(core.address, retry=ONE_ATTEMPT) as client:
        status = client.get_execution_status(execution_id)
        page, total, _ = client.list_executions(limit=1)
    assert status.status is ExecutionState.COMPLETED
    assert len(status.inputs) == HUGE_KEYS + 4
    assert status.inputs["key_59999"] == {"text": "x" * 60, "n": 59999.5}
    assert math.isnan(status.inputs["nan"]) and status.inputs["inf"] == math.inf and status.inputs["ninf"] == -math.inf
    assert status.inputs["int"] == 7
    assert total == 1 and page[0].execution_id == execution_id and len(page[0].inputs) == HUGE_KEYS + 4


def test_sensor_pokes_an_execution_with_odd_inputs(core, set_connection):
    execution_id = core.start_execution("orders", inputs={"nan": float("nan"), "deep": [[[{"a": [1.5]}]]]})
    core.complete(execution_id)
    sensor = CerebelumExecutionSensor(
        task_id="wait", execution_id=execution_id, cerebelum_conn_id=set_connection(core.address)
    )
    result = sensor.poke({})
    assert result.is_done
    assert result.xcom_value["inputs"]["deep"] == [[[{"a": [1.5]}]]]


@pytest.fixture(scope="module")
def scripted_server():
    with ScriptedCore() as server:
        yield server


@pytest.fixture(scope="module")
def wire_client(scripted_server):
    with SyncExecutionClient(scripted_server.address, retry=ONE_ATTEMPT, timeout=10) as client:
        yield client


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(message=status_messages())
def test_any_status_answer_over_the_wire_converts_or_is_not_found(scripted_server, wire_client, message):
    scripted_server.default("GetExecutionStatus", message)
    scripted_server.default(
        "ListExecutions", pb.ListExecutionsResponse(executions=[message, message], total_count=-1, has_more=False)
    )
    client = wire_client
    try:
        status = client.get_execution_status("asked-for")
    except ExecutionNotFoundError:
        # Only Core's own "not found" answer may end this way.
        assert message.status == pb.EXECUTION_STATE_UNSPECIFIED and message.error.kind == "not_found"
    else:
        assert isinstance(status, ExecutionStatus)
        assert isinstance(status.status, ExecutionState)
        if message.status in pb.ExecutionState.values():
            assert status.status.value == pb.ExecutionState.Name(message.status)
        else:
            assert status.status is ExecutionState.UNSPECIFIED  # an enum number Core does not have yet
        if not message.HasField("completed_at"):
            assert status.completed_at is None
    executions, _, _ = client.list_executions(limit=2)
    assert len(executions) == 2
