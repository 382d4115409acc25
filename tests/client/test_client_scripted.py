"""Both clients against a scripted gRPC server: odd answers, scripted faults, what was sent.

The behaviour the Core emulator can produce is tested against it (test_client_emulator.py);
this module keeps what it cannot: states Core never reports (PAUSED, unknown numbers), fields it
never fills, gRPC NOT_FOUND and other codes, and assertions on the exact request received.
Each test runs twice, with ExecutionClient and with SyncExecutionClient (fixture make_client).
"""

from __future__ import annotations

from datetime import datetime, timezone

import grpc
import pytest

from cerebelum_provider.client import RetryConfig, calls_end_within
from cerebelum_provider.exceptions import (
    CerebelumAuthError,
    CerebelumRPCError,
    CoreInternalError,
    CoreUnavailableError,
    ErrorCode,
    ExecutionNotFoundError,
)
from cerebelum_provider.models import ExecutionState
from cerebelum_provider.proto import worker_service_pb2 as pb
from tests.client.scripted_core import Abort, Delay, not_found_message, paged, status_message

WIRE_STATES = [(state, getattr(pb, state.value)) for state in ExecutionState]


@pytest.mark.parametrize(("state", "wire"), WIRE_STATES, ids=[state.name for state, _ in WIRE_STATES])
async def test_every_state_is_reported(scripted, make_client, state, wire):
    scripted.default("GetExecutionStatus", lambda request: status_message(request.execution_id, wire))
    status = await make_client(scripted.address).get_execution_status("exec-1")
    assert status.status is state
    assert status.execution_id == "exec-1"
    assert scripted.received("GetExecutionStatus")[0].request.execution_id == "exec-1"


async def test_full_status_converts_every_field(scripted, make_client):
    message = status_message("exec-2", pb.EXECUTION_SLEEPING, current_step_index=2, total_steps=4)
    message.inputs.update({"n": 123.0, "ratio": 0.5, "tags": ["a", 2.0]})
    message.step_outputs["validate"].update({"ok": True})
    message.completed_steps.add(step_name="validate", step_index=0, status="completed")
    message.sleep_info.duration_ms = 600_000
    message.sleep_info.remaining_ms = 1_000
    message.sleep_info.sleep_started_at.FromSeconds(1_700_000_100)
    message.approval_info.approval_type = "manager"
    message.approval_info.timeout_ms = 5
    message.completed_at.FromSeconds(1_700_000_090)
    scripted.default("GetExecutionStatus", message)
    status = await make_client(scripted.address).get_execution_status("exec-2")
    assert status.inputs == {"n": 123, "ratio": 0.5, "tags": ["a", 2]}
    assert type(status.inputs["n"]) is int
    assert status.step_outputs == {"validate": {"ok": True}}
    assert [step.step_name for step in status.completed_steps] == ["validate"]
    assert status.completed_steps[0].started_at is None
    assert status.started_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert status.elapsed_seconds == 90
    assert status.progress_percentage == 50.0
    assert status.sleep_info.remaining_ms == 1_000
    assert status.sleep_info.sleep_started_at.tzinfo is timezone.utc
    assert status.approval_info.approval_type == "manager"
    assert status.approval_info.requested_at is None


async def test_ok_with_not_found_becomes_execution_not_found(scripted, make_client):
    scripted.default("GetExecutionStatus", lambda request: not_found_message(request.execution_id))
    client = make_client(scripted.address)
    with pytest.raises(ExecutionNotFoundError) as caught:
        await client.get_execution_status("ghost-7")
    assert caught.value.execution_id == "ghost-7"
    assert caught.value.core_address == scripted.address
    assert "ghost-7" in str(caught.value) and scripted.address in str(caught.value)
    assert scripted.count() == 1  # an answer, not a failure: never retried


async def test_grpc_not_found_becomes_execution_not_found(scripted, make_client):
    scripted.default("GetExecutionStatus", Abort(grpc.StatusCode.NOT_FOUND, "no such thing"))
    with pytest.raises(ExecutionNotFoundError) as caught:
        await make_client(scripted.address).get_execution_status("ghost-8")
    assert caught.value.code == ErrorCode.NOT_FOUND
    assert caught.value.transport_code == grpc.StatusCode.NOT_FOUND
    assert scripted.count() == 1


async def test_list_without_filters_leaves_optional_fields_unset(scripted, make_client):
    scripted.default("ListExecutions", pb.ListExecutionsResponse())
    await make_client(scripted.address).list_executions()
    request = scripted.received("ListExecutions")[0].request
    assert not request.HasField("workflow_name")
    assert not request.HasField("status")
    assert (request.limit, request.offset) == (50, 0)


async def test_list_filters_limit_offset_are_sent(scripted, make_client):
    scripted.default(
        "ListExecutions",
        pb.ListExecutionsResponse(executions=[status_message("a")], total_count=7, has_more=True),
    )
    executions, total, has_more = await make_client(scripted.address).list_executions(
        workflow_name="orders", status="FAILED", limit=3, offset=4
    )
    request = scripted.received("ListExecutions")[0].request
    assert request.HasField("workflow_name") and request.workflow_name == "orders"
    assert request.HasField("status") and request.status == pb.EXECUTION_FAILED
    assert (request.limit, request.offset) == (3, 4)
    assert ([e.execution_id for e in executions], total, has_more) == (["a"], 7, True)


@pytest.mark.parametrize("answer", ["resumed", "already_running", "failed_to_resume"])
async def test_resume_answers(scripted, make_client, answer):
    scripted.default("ResumeExecution", pb.ExecutionHandle(execution_id="exec-4", status=answer))
    assert (
        await make_client(scripted.address).resume_execution("exec-4", skip_completed_steps=False) == answer
    )
    request = scripted.received("ResumeExecution")[0].request
    assert (request.execution_id, request.skip_completed_steps) == ("exec-4", False)


async def test_execute_workflow_sends_inputs_and_options(scripted, make_client):
    handle = pb.ExecutionHandle(execution_id="exec-9", status="running")
    handle.started_at.FromSeconds(1_700_000_000)
    scripted.default("ExecuteWorkflow", handle)
    result = await make_client(scripted.address).execute_workflow(
        "orders", {"n": 1, "nested": {"x": [1, "y"]}}, correlation_id="corr", tags=["a", "b"], timeout_ms=500
    )
    assert (result.execution_id, result.status) == ("exec-9", "running")
    assert result.started_at.tzinfo is timezone.utc
    request = scripted.received("ExecuteWorkflow")[0].request
    assert request.workflow_module == "orders"
    assert dict(request.inputs) == {"n": 1.0, "nested": request.inputs["nested"]}
    assert (request.options.correlation_id, list(request.options.tags), request.options.timeout_ms) == (
        "corr",
        ["a", "b"],
        500,
    )
    assert not request.options.execution_id


async def test_execute_workflow_is_never_retried(scripted, make_client):
    scripted.default("ExecuteWorkflow", Abort(grpc.StatusCode.UNAVAILABLE, "restarting"))
    with pytest.raises(CoreUnavailableError):
        await make_client(scripted.address).execute_workflow("orders")
    assert scripted.count("ExecuteWorkflow") == 1


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED],
)
async def test_transient_failures_are_retried_until_success(scripted, make_client, code):
    scripted.queue("GetExecutionStatus", Abort(code), Abort(code))
    scripted.default("GetExecutionStatus", status_message("exec-5"))
    status = await make_client(scripted.address).get_execution_status("exec-5")
    assert status.execution_id == "exec-5"
    assert scripted.count("GetExecutionStatus") == 3


async def test_retry_budget_spent_raises_core_unavailable(scripted, make_client):
    scripted.default("ListExecutions", Abort(grpc.StatusCode.UNAVAILABLE, "restarting"))
    with pytest.raises(CoreUnavailableError) as caught:
        await make_client(scripted.address).list_executions()
    assert scripted.count("ListExecutions") == 3  # FAST_RETRY.max_attempts
    assert scripted.address in str(caught.value) and "3 attempts" in str(caught.value)
    assert caught.value.code == ErrorCode.UNAVAILABLE
    assert caught.value.transport_code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED])
async def test_auth_failures_are_never_retried(scripted, make_client, code):
    scripted.default("ResumeExecution", Abort(code, "bad token"))
    with pytest.raises(CerebelumAuthError) as caught:
        await make_client(scripted.address, token="secret-token").resume_execution("exec-6")
    assert scripted.count("ResumeExecution") == 1
    assert (caught.value.code, caught.value.transport_code) == (ErrorCode[code.name], code)
    assert "secret-token" not in str(caught.value)


async def test_cores_grpc_crash_is_internal_like_its_http_500(scripted, make_client):
    # What release be56c90 answers a status query on an existing execution.
    scripted.default("GetExecutionStatus", Abort(grpc.StatusCode.UNKNOWN, "Internal Server Error"))
    with pytest.raises(CoreInternalError) as caught:
        await make_client(scripted.address).get_execution_status("exec-7")
    assert (caught.value.code, caught.value.transport_code) == (ErrorCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    assert scripted.count() == 1


async def test_other_codes_become_rpc_error_with_code(scripted, make_client):
    scripted.default("GetExecutionStatus", Abort(grpc.StatusCode.INTERNAL, "kaboom"))
    with pytest.raises(CerebelumRPCError) as caught:
        await make_client(scripted.address).get_execution_status("exec-7")
    assert (caught.value.code, caught.value.transport_code) == (ErrorCode.INTERNAL, grpc.StatusCode.INTERNAL)
    assert caught.value.execution_id == "exec-7"
    assert scripted.count() == 1


async def test_deadline_exceeded_then_answer_in_time(scripted, make_client):
    scripted.queue("GetExecutionStatus", Delay(2.0, status_message("late")))
    scripted.default("GetExecutionStatus", status_message("exec-10"))
    status = await make_client(scripted.address, timeout=0.3).get_execution_status("exec-10")
    assert status.execution_id == "exec-10"
    assert scripted.count("GetExecutionStatus") == 2


async def test_token_is_sent_as_bearer_metadata_on_every_call(scripted, make_client):
    scripted.default("GetExecutionStatus", status_message("exec-11"))
    scripted.default("ResumeExecution", pb.ExecutionHandle(status="resumed"))
    client = make_client(scripted.address, token="tok-123")
    await client.get_execution_status("exec-11")
    await client.resume_execution("exec-11")
    assert [item.metadata.get("authorization") for item in scripted.received()] == ["Bearer tok-123"] * 2


async def test_no_token_sends_no_authorization(scripted, make_client):
    scripted.default("GetExecutionStatus", status_message("exec-12"))
    await make_client(scripted.address).get_execution_status("exec-12")
    assert "authorization" not in scripted.received()[0].metadata


async def test_one_channel_is_reused_by_every_call(scripted, make_client):
    scripted.default("GetExecutionStatus", lambda request: status_message(request.execution_id))
    client = make_client(scripted.address)
    assert client.client._transport._channel is None  # opened lazily
    await client.get_execution_status("exec-first")
    channel = client.client._transport._channel
    for number in range(5):
        await client.get_execution_status(f"exec-{number}")
    assert channel is not None and client.client._transport._channel is channel
    assert len({item.peer for item in scripted.received()}) == 1
    assert scripted.count() == 6


async def test_list_active_workflows_reads_every_page(scripted, make_client):
    running = [status_message(f"run-{number:03d}") for number in range(230)]
    scripted.default("ListExecutions", paged(lambda: running))
    active = await make_client(scripted.address).list_active_workflows()
    assert [execution.execution_id for execution in active] == [message.execution_id for message in running]
    requests = [item.request for item in scripted.received("ListExecutions")]
    assert all(request.status == pb.EXECUTION_RUNNING and request.HasField("status") for request in requests)
    assert all(not request.HasField("workflow_name") for request in requests)
    assert [request.offset for request in requests] == [0, 100, 200]


async def test_callers_deadline_cuts_the_retry_and_stops_the_retries(scripted, make_client):
    # Each answer would take 30 s; each attempt may take 0.3 s; the caller has 0.5 s.
    scripted.default("GetExecutionStatus", Delay(30, status_message("exec-1")))
    client = make_client(scripted.address, timeout=0.3)
    with calls_end_within(0.5), pytest.raises(CoreUnavailableError, match="after 2 attempts") as caught:
        await client.get_execution_status("exec-1")
    assert caught.value.transport_code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert scripted.count("GetExecutionStatus") == 2
    # Past the deadline: one attempt, no retry.
    scripted.default("GetExecutionStatus", Abort(grpc.StatusCode.UNAVAILABLE, "restarting"))
    with calls_end_within(-1), pytest.raises(CoreUnavailableError, match="after 1 attempt:"):
        await client.get_execution_status("exec-1")
    assert scripted.count("GetExecutionStatus") == 3


async def test_a_retry_the_deadline_stops_leaves_the_failure_before_it(scripted, make_client):
    # The backoff (1 s and more) is cut at the caller's deadline, and the retry after it is never
    # sent: the call fails with what the one attempt got, not with "not retried".
    scripted.default("GetExecutionStatus", Abort(grpc.StatusCode.UNAVAILABLE, "restarting"))
    client = make_client(
        scripted.address, retry=RetryConfig(max_attempts=5, initial_backoff=1.0, max_backoff=2.0)
    )
    with calls_end_within(0.2), pytest.raises(CoreUnavailableError) as caught:
        await client.get_execution_status("exec-1")
    message = str(caught.value)
    assert "after 1 attempt: UNAVAILABLE (restarting); the caller's deadline ended the call" in message, (
        message
    )
    assert caught.value.transport_code is grpc.StatusCode.UNAVAILABLE
    assert scripted.count("GetExecutionStatus") == 1
