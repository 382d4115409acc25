"""The clients' conformance tests: both clients against the Core emulator (fixtures `core`,
`core_factory` in tests/conftest.py), through each way of reaching it (`route`).

The routes: Core's gRPC API and its REST API over loopback sockets, the REST app in process
(``CoreEmulator.client_transport()``, the client's own HTTP transport without sockets), and
tests/client/minimal_transport.py, a third transport of a few dozen lines written only against
``cerebelum_provider.client.transport``. A test says which routes it needs when not every one
can pass it: failures need a transport that maps them, connections need a wire. What REST says
less than gRPC (inputs, timestamps, sleep and approval details) is checked where the client
speaks gRPC. The emulator behaves as the real Core, quirks included; odd answers it cannot
produce are in test_client_scripted.py.
"""

from __future__ import annotations

import dataclasses

import grpc
import pytest

from cerebelum_provider.client import CoreAPI
from cerebelum_provider.emulator.in_process import IN_PROCESS_URL
from cerebelum_provider.exceptions import (
    CerebelumAuthError,
    CoreUnavailableError,
    ErrorCode,
    ExecutionNotFoundError,
    WorkflowStartError,
)
from cerebelum_provider.models import ExecutionState
from tests.client.conftest import FAST_RETRY
from tests.client.minimal_transport import AsyncMinimalTransport, SyncMinimalTransport

STEPS = ["validate", "charge", "ship", "notify"]

ROUTES = ("grpc", "http", "in_process", "minimal")
#: The routes whose transports retry and map failures (faults, tokens, deadlines); the minimal
#: transport does neither.
MAPPING_ROUTES = ("grpc", "http", "in_process")
#: The routes over sockets, for what only a wire shows (connections).
WIRE_ROUTES = ("grpc", "http")


@pytest.fixture(params=ROUTES)
def route(request):
    return request.param


@pytest.fixture
def connect(route, make_client):
    """``connect(core, **client_kwargs)`` -> a client (AsyncFacade) reaching ``core`` by ``route``."""

    def connect(core, **kwargs):
        if route == "grpc":
            return make_client(core.address, **kwargs)
        if route == "http":
            return make_client(core.http_url, **kwargs)
        if route == "in_process":
            settings = {"retry": FAST_RETRY, "timeout": 5.0, **kwargs}
            return make_client(
                transport_for=lambda blocking: core.client_transport(blocking=blocking, **settings)
            )
        minimal = {True: SyncMinimalTransport, False: AsyncMinimalTransport}
        return make_client(
            transport_for=lambda blocking: minimal[blocking](core.httpx_transport(), IN_PROCESS_URL, **kwargs)
        )

    return connect


@pytest.fixture
def orders(core):
    core.define_workflow("orders", STEPS)
    return core


async def test_running_execution(orders, connect):
    execution_id = orders.start_execution("orders", inputs={"n": 123, "ratio": 0.5})
    orders.advance(steps=1, execution_id=execution_id)
    client = connect(orders)
    status = await client.get_execution_status(execution_id)
    assert status.status is ExecutionState.RUNNING
    assert (status.current_step_index, status.total_steps, status.current_step_name) == (1, 4, "charge")
    assert status.progress_percentage == 25.0
    if client.client.api is CoreAPI.GRPC:
        assert status.inputs == {"n": 123, "ratio": 0.5} and type(status.inputs["n"]) is int
        assert [step.step_name for step in status.completed_steps] == ["validate"]
        assert status.started_at.tzinfo is not None and status.started_at.utcoffset().total_seconds() == 0


async def test_completed_failed_sleeping_waiting_states(orders, connect):
    completed = orders.start_execution("orders")
    failed = orders.start_execution("orders", fail_at="ship")
    sleeping = orders.start_execution("orders", sleep_at="charge", sleep_ms=60_000)
    waiting = orders.start_execution("orders", approval_at="ship", approval_timeout_ms=3_600_000)
    orders.run_until_settled()
    client = connect(orders)

    done = await client.get_execution_status(completed)
    broken = await client.get_execution_status(failed)
    asleep = await client.get_execution_status(sleeping)
    pending = await client.get_execution_status(waiting)
    assert done.status is ExecutionState.COMPLETED and done.status.is_terminal
    assert done.current_step_index == 4 and done.progress_percentage == 100.0
    assert broken.status is ExecutionState.FAILED and broken.error["message"] == "boom"
    assert asleep.status is ExecutionState.SLEEPING
    assert pending.status is ExecutionState.WAITING_FOR_APPROVAL
    if client.client.api is CoreAPI.GRPC:
        assert done.current_step_name == "" and done.completed_at is not None
        assert broken.error["kind"] == "step_error"
        assert asleep.sleep_info.duration_ms == 60_000 and 0 < asleep.sleep_info.remaining_ms <= 60_000
        assert pending.approval_info.timeout_ms == 3_600_000


async def test_state_that_cannot_be_rebuilt(orders, connect):
    execution_id = orders.start_execution("orders")
    orders.corrupt(execution_id)
    client = connect(orders)
    status = await client.get_execution_status(execution_id)
    assert status.status is ExecutionState.FAILED
    if client.client.api is CoreAPI.GRPC:  # Core's REST error is a text, parsed without this kind
        assert status.error["kind"] == "reconstruction_error"


async def test_unknown_id_is_not_found(core, connect):
    client = connect(core)
    with pytest.raises(ExecutionNotFoundError) as caught:
        await client.get_execution_status("no-such-execution")
    assert "no-such-execution" in str(caught.value) and client.client.address in str(caught.value)
    assert core.call_counts()["GetExecutionStatus"] == 1


async def test_list_without_workflow_filter_returns_everything(orders, connect):
    # The reference SDK sends workflow_name="" here, which matches nothing on Core.
    core = orders
    core.define_workflow("billing", ["bill"])
    ids = [core.start_execution("orders") for _ in range(3)] + [core.start_execution("billing")]
    executions, total, has_more = await connect(core).list_executions()
    assert sorted(e.execution_id for e in executions) == sorted(ids)
    assert (total, has_more) == (4, False)


async def test_list_filters_limit_and_offset(orders, connect):
    core = orders
    core.define_workflow("billing", ["bill"])
    order_ids = [core.start_execution("orders") for _ in range(7)]
    core.start_execution("billing")
    failed = core.start_execution("orders", fail_at=0)
    core.advance(steps=1, execution_id=failed)
    client = connect(core)

    first, total, has_more = await client.list_executions(workflow_name="orders", limit=3)
    assert (len(first), total, has_more) == (3, 8, True)
    rest, _, has_more = await client.list_executions(workflow_name="orders", limit=100, offset=3)
    assert (len(rest), has_more) == (5, False)
    assert sorted(e.execution_id for e in first + rest) == sorted(order_ids + [failed])

    only_failed, total, _ = await client.list_executions(workflow_name="orders", status="FAILED")
    assert [e.execution_id for e in only_failed] == [failed] and total == 1
    assert (await client.list_executions(workflow_name="nope"))[1] == 0


async def test_resume_answers(orders, connect):
    core = orders
    failed = core.start_execution("orders", fail_at="charge")
    completed = core.start_execution("orders")
    running = core.start_execution("orders", fail_at="notify")
    core.run_until_settled(failed)
    core.run_until_settled(completed)
    client = connect(core)
    assert await client.resume_execution(failed) == "resumed"
    assert await client.resume_execution(failed) == "already_running"
    assert await client.resume_execution(running) == "already_running"
    assert await client.resume_execution(completed) == "failed_to_resume"
    assert await client.resume_execution("unknown-id") == "failed_to_resume"
    assert core.resume_count(failed) == 1
    assert (await client.get_execution_status(failed)).status is ExecutionState.RUNNING


async def test_execute_workflow(orders, connect):
    client = connect(orders)
    # Core's REST API starts a workflow from its name and inputs only.
    options = {"correlation_id": "c-1", "tags": ["x"]} if client.client.api is CoreAPI.GRPC else {}
    handle = await client.execute_workflow("orders", {"n": 5}, **options)
    assert handle.status == ("running" if client.client.api is CoreAPI.GRPC else "started")
    status = await client.get_execution_status(handle.execution_id)
    assert status.execution_id == handle.execution_id and status.status is ExecutionState.RUNNING
    assert orders.status(handle.execution_id).inputs == {"n": 5}
    if client.client.api is CoreAPI.GRPC:
        assert status.workflow_name == "orders" and status.inputs == {"n": 5}


async def test_execute_unknown_workflow_raises(core_factory, connect):
    core = core_factory(accept_any_workflow=False)
    with pytest.raises(WorkflowStartError, match="ghost"):
        await connect(core).execute_workflow("ghost")
    assert core.call_counts()["ExecuteWorkflow"] == 1


async def test_list_active_workflows_returns_every_running_one(orders, connect):
    running = {orders.start_execution("orders") for _ in range(130)}
    finished = orders.start_execution("orders")
    orders.complete(finished)
    active = await connect(orders).list_active_workflows()
    assert len(active) == 130 and {e.execution_id for e in active} == running
    assert orders.call_counts()["ListExecutions"] == 2  # 100 + 30, one clean pass


# REST's own case is test_client_http.py::test_iter_executions_with_filters_while_the_set_changes.
@pytest.mark.parametrize("route", ["grpc"], indirect=True)
async def test_iter_executions_while_executions_are_resumed(orders, connect):
    # Core lists in id order, but a resumed execution leaves the FAILED set in the middle of
    # paging: every later one moves one offset back, and a plain offset pager would skip one.
    core = orders
    failed = [core.start_execution("orders", fail_at=0) for _ in range(25)]
    core.advance(steps=1)
    client = connect(core)
    seen = []
    iterator = client.client.iter_executions(workflow_name="orders", status="FAILED", page_size=5)

    def resume_a_seen_one() -> None:
        if len(seen) in (6, 11, 17):
            core.engine.resume(seen[len(seen) // 5])  # already yielded: leaves the FAILED set

    if client.blocking:
        for execution in iterator:
            seen.append(execution.execution_id)
            resume_a_seen_one()
    else:
        async for execution in iterator:
            seen.append(execution.execution_id)
            resume_a_seen_one()
    assert sorted(seen) == sorted(failed)
    assert len(seen) == len(set(seen))
    # The pass that saw the set change was not clean, so a second pass proved nothing was skipped.
    assert core.call_counts()["ListExecutions"] == 10


@pytest.mark.parametrize("route", MAPPING_ROUTES, indirect=True)
async def test_transient_failures_are_retried(core, connect):
    execution_id = core.start_execution("orders")
    core.fail_next(2, code=grpc.StatusCode.UNAVAILABLE, rpcs="GetExecutionStatus")
    status = await connect(core).get_execution_status(execution_id)
    assert status.execution_id == execution_id
    assert core.call_counts()["GetExecutionStatus"] == 3


@pytest.mark.parametrize(
    ("route", "code"),
    [
        *((route, grpc.StatusCode.UNAVAILABLE) for route in MAPPING_ROUTES),
        *((route, grpc.StatusCode.DEADLINE_EXCEEDED) for route in MAPPING_ROUTES),
        # REST has no CANCELLED: the emulator answers it 500, a crash that is not retried.
        ("grpc", grpc.StatusCode.CANCELLED),
    ],
    ids=lambda value: value.name if isinstance(value, grpc.StatusCode) else value,
    indirect=["route"],
)
async def test_server_side_blips_are_retried_for_reads_and_resumes(core, connect, code):
    # A CANCELLED the client did not ask for comes from the server (streams reset under load).
    execution_id = core.start_execution("orders", fail_at=0)
    core.run_until_settled()
    client = connect(core)
    core.fail_next(2, code=code)
    assert (await client.get_execution_status(execution_id)).execution_id == execution_id
    core.fail_next(2, code=code)
    assert await client.resume_execution(execution_id) == "resumed"
    assert core.call_counts()["GetExecutionStatus"] == 3
    assert core.call_counts()["ResumeExecution"] == 3
    assert core.resume_count(execution_id) == 1


# Over REST, RESOURCE_EXHAUSTED is a 429: a rate limit, waited out (test_client_http_transport.py).
@pytest.mark.parametrize("route", ["grpc"], indirect=True)
async def test_retry_budget_then_core_unavailable(core, connect):
    core.fail_next(10, code=grpc.StatusCode.RESOURCE_EXHAUSTED)
    with pytest.raises(CoreUnavailableError) as caught:
        await connect(core).list_executions()
    assert caught.value.code == ErrorCode.RESOURCE_EXHAUSTED
    assert core.call_counts()["ListExecutions"] == 3


@pytest.mark.parametrize("route", ["grpc", "in_process"], indirect=True)
async def test_hanging_core_hits_deadlines_then_core_unavailable(core, connect):
    core.hang(True)
    client = connect(core, timeout=0.2)
    with pytest.raises(CoreUnavailableError) as caught:
        await client.get_execution_status("any")
    assert caught.value.code == ErrorCode.DEADLINE_EXCEEDED
    if client.client.api is CoreAPI.GRPC:
        assert caught.value.transport_code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert core.call_counts()["GetExecutionStatus"] == 3
    core.hang(False)


@pytest.mark.parametrize("route", MAPPING_ROUTES, indirect=True)
async def test_token_accepted_and_refused_without_retry(core_factory, connect):
    core = core_factory(token="s3cret")
    execution_id = core.start_execution("orders")
    assert (await connect(core, token="s3cret").get_execution_status(execution_id)).execution_id
    with pytest.raises(CerebelumAuthError):
        await connect(core, token="wrong").get_execution_status(execution_id)
    with pytest.raises(CerebelumAuthError):
        await connect(core).get_execution_status(execution_id)
    assert core.call_counts()["GetExecutionStatus"] == 3  # one each: auth failures are not retried


@pytest.mark.parametrize("route", WIRE_ROUTES, indirect=True)
async def test_one_connection_for_many_calls(core, connect):
    execution_id = core.start_execution("orders")
    client = connect(core)
    for _ in range(10):
        await client.get_execution_status(execution_id)
    await client.list_executions()
    assert len(core.peers()) == 1


async def test_poll_execution_reads_the_state_at_once_and_the_whole_status_later(orders, connect):
    """poll_execution is get_execution_status for a poll loop: same answer, whole status converted once."""
    client = connect(orders)
    running = orders.start_execution("orders", inputs={"n": 1})
    orders.advance(steps=1, execution_id=running)
    sleeping = orders.start_execution("orders", sleep_at="charge", sleep_ms=60_000)
    failed = orders.start_execution("orders", fail_at="ship")
    orders.run_until_settled(sleeping)
    orders.run_until_settled(failed)

    for execution_id in (running, sleeping, failed):
        answer = await client.poll_execution(execution_id)
        status = await client.get_execution_status(execution_id)
        assert answer.state is status.status
        expected_sleep = status.sleep_info.remaining_ms if status.sleep_info else None
        # Core's clock moves between the two queries only when the emulator's does: it does not here.
        assert answer.sleep_remaining_ms == expected_sleep
        whole = answer.status()
        assert whole is answer.status()  # converted once
        assert dataclasses.replace(whole, elapsed_seconds=None) == dataclasses.replace(
            status, elapsed_seconds=None
        )
        assert repr(answer).startswith(f"PollAnswer(state={status.status.name}")
    assert (await client.poll_execution(sleeping)).state is ExecutionState.SLEEPING
    if client.client.api is CoreAPI.GRPC:  # Core's REST status says nothing of sleeps
        assert 0 < (await client.poll_execution(sleeping)).sleep_remaining_ms <= 60_000
    assert (await client.poll_execution(failed)).status().error["kind"] == "step_error"


async def test_poll_execution_refuses_unknown_and_bad_ids_as_get_execution_status_does(orders, connect):
    client = connect(orders)
    with pytest.raises(ExecutionNotFoundError, match="knows no execution 'no-such-id'"):
        await client.poll_execution("no-such-id")
    calls = sum(orders.call_counts().values())
    with pytest.raises(ValueError, match="execution_id"):
        await client.poll_execution("")
    with pytest.raises(TypeError, match="execution_id"):
        await client.poll_execution(42)
    assert sum(orders.call_counts().values()) == calls  # refused before anything was sent
