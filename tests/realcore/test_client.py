"""This project's client against the real Core: the same calls over REST and gRPC, and what each says.

The conformance table (test_conformance.py) pins what Core answers on the wire; these tests pin
what ``SyncExecutionClient`` and ``ExecutionClient`` make of it: models over REST, and over gRPC a
clear ``CoreInternalError`` where Core's handler crashes (every status query on a real execution).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from real_core import RealCore

from cerebelum_provider.client import ExecutionClient, SyncExecutionClient
from cerebelum_provider.exceptions import (
    CerebelumAuthError,
    CoreInternalError,
    ErrorCode,
    ExecutionNotFoundError,
    RequestRefusedError,
    UnsupportedOperationError,
    WorkflowStartError,
)
from cerebelum_provider.models import ExecutionState, ExecutionStatus

pytestmark = pytest.mark.realcore

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"


# Core answers its reads one at a time (its event store is one process) and was measured to stall
# for tens of seconds behind a long read: a 60 s deadline keeps a slow answer from failing a row.
@pytest.fixture(scope="module")
def rest(real_core: RealCore) -> Iterator[SyncExecutionClient]:
    with SyncExecutionClient(real_core.http_url, token=real_core.token, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def grpc_client(real_core: RealCore) -> Iterator[SyncExecutionClient]:
    with SyncExecutionClient(real_core.grpc_target, timeout=60) as client:
        yield client


def _wait(client: SyncExecutionClient, execution_id: str, state: ExecutionState) -> ExecutionStatus:
    deadline = time.monotonic() + 20
    while (status := client.get_execution_status(execution_id)).status is not state:
        assert not status.status.is_terminal, f"{execution_id} ended {status.status}, not {state}"
        assert time.monotonic() < deadline, f"{execution_id} still {status.status} after 20 s"
        time.sleep(0.1)
    return status


def test_rest_runs_a_workflow_to_completion(rest: SyncExecutionClient) -> None:
    handle = rest.execute_workflow("rc_ok", {"order": 7})
    status = _wait(rest, handle.execution_id, ExecutionState.COMPLETED)
    assert (status.execution_id, status.current_step_index, status.total_steps) == (handle.execution_id, 3, 3)
    assert status.progress_percentage == 100.0
    assert status.error is None
    assert status.step_outputs == {
        "ok_a": {"a_done": True, "n": 1.0}, "ok_b": {"b_done": True, "n": 2.0},
        "ok_c": {"c_done": True, "n": 3.0},
    }


def test_grpc_starts_but_cannot_read_status_and_says_to_use_rest(
    rest: SyncExecutionClient, grpc_client: SyncExecutionClient
) -> None:
    handle = grpc_client.execute_workflow("rc_ok", {"order": 8})
    assert handle.status == "running"
    with pytest.raises(CoreInternalError) as crash:
        grpc_client.get_execution_status(handle.execution_id)
    assert handle.execution_id in str(crash.value) and "http://" in str(crash.value)
    # Release be56c90 says UNKNOWN "Internal Server Error"; it means what its HTTP 500 twin means.
    assert (crash.value.code, crash.value.transport_code.name) == (ErrorCode.INTERNAL, "UNKNOWN")
    # the same execution, read over REST
    assert _wait(rest, handle.execution_id, ExecutionState.COMPLETED).total_steps == 3


@pytest.mark.parametrize("api", ["rest", "grpc"])
def test_unknown_execution_is_not_found(
    api: str, rest: SyncExecutionClient, grpc_client: SyncExecutionClient
) -> None:
    client = rest if api == "rest" else grpc_client
    with pytest.raises(ExecutionNotFoundError) as missing:
        client.get_execution_status(UNKNOWN_ID)
    assert missing.value.execution_id == UNKNOWN_ID and missing.value.code is ErrorCode.NOT_FOUND


@pytest.mark.parametrize("api", ["rest", "grpc"])
def test_unknown_workflow_does_not_start(
    api: str, rest: SyncExecutionClient, grpc_client: SyncExecutionClient
) -> None:
    client = rest if api == "rest" else grpc_client
    with pytest.raises(WorkflowStartError, match="rc_never_submitted"):
        client.execute_workflow("rc_never_submitted", {})


def test_failed_execution_reports_the_steps_error(rest: SyncExecutionClient) -> None:
    handle = rest.execute_workflow("rc_fail", {})
    status = _wait(rest, handle.execution_id, ExecutionState.FAILED)
    assert status.error == {"kind": "RuntimeError", "message": "kaboom from python step", "stacktrace": ""}
    assert (status.current_step_name, status.current_step_index, status.total_steps) == ("boom", 1, 2)


@pytest.mark.parametrize("api", ["rest", "grpc"])
def test_resume_of_a_failed_execution_runs_nothing(
    api: str, rest: SyncExecutionClient, grpc_client: SyncExecutionClient, real_core: RealCore
) -> None:
    handle = rest.execute_workflow("rc_fail", {})
    _wait(rest, handle.execution_id, ExecutionState.FAILED)
    client = rest if api == "rest" else grpc_client
    assert client.resume_execution(handle.execution_id) == "already_running"
    time.sleep(1.5)
    assert real_core.steps_run(handle.execution_id) == ["ok_a", "boom"]
    assert rest.get_execution_status(handle.execution_id).status is ExecutionState.FAILED


def test_approval_over_rest(rest: SyncExecutionClient, grpc_client: SyncExecutionClient) -> None:
    handle = rest.execute_workflow("rc_ask", {})
    waiting = _wait(rest, handle.execution_id, ExecutionState.WAITING_FOR_APPROVAL)
    assert waiting.current_step_name == "ask"
    with pytest.raises(UnsupportedOperationError):
        grpc_client.approve_execution(handle.execution_id, {"ok": True})
    response: dict[str, Any] = {"approved": True, "by": "client test"}
    assert rest.approve_execution(handle.execution_id, response) == "approved"
    done = _wait(rest, handle.execution_id, ExecutionState.COMPLETED)
    assert done.step_outputs["ask"] == {"approved_with": response}


def test_approving_a_failed_execution_is_refused(rest: SyncExecutionClient) -> None:
    handle = rest.execute_workflow("rc_fail", {})
    _wait(rest, handle.execution_id, ExecutionState.FAILED)
    with pytest.raises(RequestRefusedError, match="is FAILED, not waiting for approval; nothing was sent"):
        rest.approve_execution(handle.execution_id, {"ok": True})


def test_stop_leaves_the_state_running(rest: SyncExecutionClient) -> None:
    handle = rest.execute_workflow("rc_ask", {})
    _wait(rest, handle.execution_id, ExecutionState.WAITING_FOR_APPROVAL)
    assert rest.stop_execution(handle.execution_id) == "stopped"
    assert rest.get_execution_status(handle.execution_id).status is ExecutionState.RUNNING
    with pytest.raises(ExecutionNotFoundError):
        rest.stop_execution(UNKNOWN_ID)


def test_listing_over_rest_and_grpc(
    rest: SyncExecutionClient, grpc_client: SyncExecutionClient, real_core: RealCore
) -> None:
    real_core.add_blueprint("rc_client_list", ["ok_a"])
    ids = [rest.execute_workflow("rc_client_list", {"n": index}).execution_id for index in range(3)]
    for execution_id in ids:
        _wait(rest, execution_id, ExecutionState.COMPLETED)
        real_core.wait_for_event(execution_id, "ExecutionCompletedEvent")
    page, total, has_more = rest.list_executions(workflow_name="rc_client_list", limit=2)
    assert (len(page), total, has_more) == (2, 3, True)
    every = list(rest.iter_executions(workflow_name="rc_client_list", status="COMPLETED", page_size=2))
    assert sorted(execution.execution_id for execution in every) == sorted(ids)
    assert {execution.workflow_name for execution in every} == {"rc_client_list"}
    assert list(rest.iter_executions(workflow_name="rc_client_list", status="FAILED")) == []
    with pytest.raises(CoreInternalError):
        grpc_client.list_executions(workflow_name="rc_client_list")


def test_events_over_rest_only(
    rest: SyncExecutionClient, grpc_client: SyncExecutionClient, real_core: RealCore
) -> None:
    handle = rest.execute_workflow("rc_ok", {})
    _wait(rest, handle.execution_id, ExecutionState.COMPLETED)
    events = real_core.wait_for_event(handle.execution_id, "ExecutionCompletedEvent")
    assert rest.get_execution_events(handle.execution_id) == events
    with pytest.raises(UnsupportedOperationError):
        grpc_client.get_execution_events(handle.execution_id)


@pytest.mark.parametrize("token", [None, "not-a-jwt"])
def test_rest_without_a_valid_token_is_an_auth_error(real_core: RealCore, token: str | None) -> None:
    client = SyncExecutionClient(real_core.http_url, token=token, timeout=60)
    with client, pytest.raises(CerebelumAuthError) as refused:
        client.get_execution_status(UNKNOWN_ID)
    assert (refused.value.code, refused.value.transport_code) == (ErrorCode.UNAUTHENTICATED, 401)
    assert real_core.token not in str(refused.value)


async def test_async_client_over_rest(real_core: RealCore) -> None:
    async with ExecutionClient(real_core.http_url, token=real_core.token, timeout=60) as client:
        handle = await client.execute_workflow("rc_ok", {"order": 9})
        deadline = time.monotonic() + 20
        while (status := await client.get_execution_status(handle.execution_id)).status is not (
            ExecutionState.COMPLETED
        ):
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.1)
        assert status.total_steps == 3
        real_core.wait_for_event(handle.execution_id, "ExecutionCompletedEvent")
        listed = [execution.execution_id async for execution in client.iter_executions(workflow_name="rc_ok")]
        assert handle.execution_id in listed



def test_a_waiting_execution_lists_as_running_but_filters_under_its_own_state(
    rest: SyncExecutionClient, real_core: RealCore
) -> None:
    # Core derives a listed execution's status from its last event (ApprovalRequestedEvent ->
    # "running"), but its status filter reads the state: RUNNING leaves it out, as over gRPC, and
    # WAITING_FOR_APPROVAL finds it.
    handle = rest.execute_workflow("rc_ask", {})
    _wait(rest, handle.execution_id, ExecutionState.WAITING_FOR_APPROVAL)
    real_core.wait_for_event(handle.execution_id, "ApprovalRequestedEvent")
    listed = {execution.execution_id: execution for execution in rest.iter_executions(workflow_name="rc_ask")}
    assert listed[handle.execution_id].status is ExecutionState.RUNNING
    assert handle.execution_id not in {execution.execution_id for execution in rest.list_active_workflows()}
    waiting = rest.iter_executions(workflow_name="rc_ask", status=ExecutionState.WAITING_FOR_APPROVAL)
    assert handle.execution_id in {execution.execution_id for execution in waiting}
