"""Both clients over Core's REST API (``http://`` addresses), against the emulator on loopback.

Every method is checked into the same models the gRPC answers become, with the emulator's REST
face playing Core's Phoenix API. The REST-only calls (stop, approve, events) are also checked to
be refused over gRPC before anything is sent. Errors, retries, TLS and pools over REST are in
test_client_http_transport.py; answers the emulator cannot give are in test_client_http_scripted.py.
"""

from __future__ import annotations

import pytest

from cerebelum_provider.client import CoreAPI
from cerebelum_provider.client._rest_convert import completed_steps_from_events
from cerebelum_provider.exceptions import (
    CerebelumRPCError,
    ErrorCode,
    ExecutionNotFoundError,
    RequestRefusedError,
    UnsupportedOperationError,
    WorkflowStartError,
)
from cerebelum_provider.models import ExecutionState

STEPS = ["validate", "charge", "ship", "notify"]


@pytest.fixture
def orders(core):
    core.define_workflow("orders", STEPS)
    return core


async def test_http_url_picks_the_rest_api(orders, make_client):
    client = make_client(orders.http_url)
    assert client.client.api is CoreAPI.HTTP and client.client.address == orders.http_url
    execution_id = orders.start_execution("orders")
    await client.get_execution_status(execution_id)
    # Counted by the emulator's REST face only: nothing went to its gRPC port.
    assert orders.call_counts() == {"GetExecutionStatus": 1}
    assert all(peer.startswith("http://") for peer in orders.peers())


async def test_running_status_progress_and_step_outputs(orders, make_client):
    execution_id = orders.start_execution("orders", inputs={"n": 123})
    orders.advance(steps=2, execution_id=execution_id)
    status = await make_client(orders.http_url).get_execution_status(execution_id)
    assert status.execution_id == execution_id
    assert status.status is ExecutionState.RUNNING
    # Core's "progress": "2/4" is current_step_index/total_steps.
    assert (status.current_step_index, status.total_steps, status.current_step_name) == (2, 4, "ship")
    assert status.progress_percentage == 50.0
    assert set(status.step_outputs) == {"validate", "charge"}
    assert status.step_outputs["charge"] == orders.status(execution_id).step_outputs["charge"]
    assert status.error is None
    # What REST does not say stays empty rather than guessed.
    assert (status.workflow_name, status.started_at, status.inputs, status.completed_steps) == (
        "",
        None,
        {},
        [],
    )


async def test_completed_failed_and_waiting_states(orders, make_client):
    completed = orders.start_execution("orders")
    failed = orders.start_execution(
        "orders", fail_at="ship", error_kind="CardDeclined", error_message="no funds"
    )
    waiting = orders.start_execution("orders", approval_at="charge")
    orders.run_until_settled()
    client = make_client(orders.http_url)

    done = await client.get_execution_status(completed)
    assert done.status is ExecutionState.COMPLETED and done.status.is_terminal
    assert (done.current_step_index, done.total_steps, done.progress_percentage) == (4, 4, 100.0)
    assert set(done.step_outputs) == set(STEPS)

    broken = await client.get_execution_status(failed)
    assert broken.status is ExecutionState.FAILED
    # Core's text "Exception in step :ship - CardDeclined: no funds" -> kind and message.
    assert broken.error == {"kind": "CardDeclined", "message": "no funds", "stacktrace": ""}
    assert (broken.current_step_index, broken.current_step_name) == (2, "ship")

    pending = await client.get_execution_status(waiting)
    assert pending.status is ExecutionState.WAITING_FOR_APPROVAL and pending.error is None


async def test_rest_and_grpc_agree_on_what_both_say(orders, make_client):
    execution_id = orders.start_execution("orders", fail_at="notify")
    orders.run_until_settled(execution_id)
    over_rest = await make_client(orders.http_url).get_execution_status(execution_id)
    over_grpc = await make_client(orders.address).get_execution_status(execution_id)
    for name in (
        "execution_id",
        "status",
        "current_step_index",
        "total_steps",
        "current_step_name",
        "progress_percentage",
        "step_outputs",
    ):
        assert getattr(over_rest, name) == getattr(over_grpc, name), name
    assert over_rest.error["message"] == over_grpc.error["message"] == "boom"


async def test_unknown_id_is_not_found(orders, make_client):
    client = make_client(orders.http_url)
    with pytest.raises(ExecutionNotFoundError) as caught:
        await client.get_execution_status("no-such-execution")
    assert caught.value.execution_id == "no-such-execution"
    assert orders.http_url in str(caught.value) and caught.value.core_address == orders.http_url
    assert orders.call_counts()["GetExecutionStatus"] == 1  # a 404 is an answer, never retried


async def test_odd_ids_are_quoted_into_the_path(orders, make_client):
    # A "?", "#" or space in an id must not change the request: it is quoted, and Core knows no
    # such id. (A "/" is checked on the scripted server: the emulator's router decodes %2F first.)
    client = make_client(orders.http_url)
    for odd in ("x?limit=1", "a#b", "é 1", "%41"):
        with pytest.raises(ExecutionNotFoundError) as caught:
            await client.get_execution_status(odd)
        assert caught.value.execution_id == odd and f"execution {odd!r}" in str(caught.value)
    assert orders.call_counts()["GetExecutionStatus"] == 4


async def test_list_filters_limit_offset_and_paging_flags(orders, make_client):
    core = orders
    core.define_workflow("billing", ["bill"])
    order_ids = [core.start_execution("orders") for _ in range(7)]
    billing = core.start_execution("billing")
    failed = core.start_execution("orders", fail_at=0)
    core.advance(steps=1, execution_id=failed)
    client = make_client(core.http_url)

    everything, total, has_more = await client.list_executions()
    assert sorted(e.execution_id for e in everything) == sorted(order_ids + [billing, failed])
    assert (total, has_more) == (9, False)

    first, total, has_more = await client.list_executions(workflow_name="orders", limit=3)
    assert (len(first), total, has_more) == (3, 8, True)
    middle, total, has_more = await client.list_executions(workflow_name="orders", limit=3, offset=3)
    assert (len(middle), total, has_more) == (3, 8, True)
    rest, total, has_more = await client.list_executions(workflow_name="orders", limit=100, offset=6)
    assert (len(rest), total, has_more) == (2, 8, False)
    seen = [e.execution_id for e in first + middle + rest]
    assert sorted(seen) == sorted(order_ids + [failed]) and len(set(seen)) == 8
    assert all(e.workflow_name == "orders" for e in first + middle + rest)

    only_failed, total, has_more = await client.list_executions(workflow_name="orders", status="FAILED")
    assert [e.execution_id for e in only_failed] == [failed] and (total, has_more) == (1, False)
    assert only_failed[0].status is ExecutionState.FAILED
    running, total, _ = await client.list_executions(status=ExecutionState.RUNNING)
    assert {e.execution_id for e in running} == set(order_ids + [billing]) and total == 8
    assert (await client.list_executions(workflow_name="nope")) == ([], 0, False)
    past_the_end = await client.list_executions(workflow_name="orders", offset=50)
    assert past_the_end == ([], 8, False)


async def test_list_sends_only_the_filters_given(orders, make_client):
    # workflow="" would match nothing on Core; None means "no filter" and must not be sent at all.
    orders.start_execution("orders")
    client = make_client(orders.http_url)
    assert (await client.list_executions(workflow_name=None, status=None))[1] == 1
    with pytest.raises(ValueError, match="workflow_name"):
        await client.list_executions(workflow_name="")
    with pytest.raises(ValueError, match="UNSPECIFIED"):
        await client.list_executions(status=ExecutionState.UNSPECIFIED)
    assert orders.call_counts() == {"ListExecutions": 1}


async def test_iter_executions_over_many_pages(orders, make_client):
    ids = {orders.start_execution("orders") for _ in range(23)}
    client = make_client(orders.http_url)
    seen = [execution.execution_id for execution in await client.collect(page_size=5)]
    assert len(seen) == 23 and set(seen) == ids
    assert orders.call_counts()["ListExecutions"] == 5  # 5+5+5+5+3, one clean pass


async def test_iter_executions_with_filters_while_the_set_changes(orders, make_client):
    core = orders
    failed = [core.start_execution("orders", fail_at=0) for _ in range(12)]
    core.start_execution("orders")
    core.advance(steps=1)
    client = make_client(core.http_url)
    seen = []
    iterator = client.client.iter_executions(workflow_name="orders", status="FAILED", page_size=4)

    def resume_one_already_seen() -> None:
        if len(seen) == 5:
            core.engine.resume(seen[0])  # leaves the FAILED set: later ones move one offset back

    if client.blocking:
        for execution in iterator:
            seen.append(execution.execution_id)
            resume_one_already_seen()
    else:
        async for execution in iterator:
            seen.append(execution.execution_id)
            resume_one_already_seen()
    assert sorted(seen) == sorted(failed) and len(seen) == len(set(seen))


async def test_list_active_workflows_reads_every_page(orders, make_client):
    running = {orders.start_execution("orders") for _ in range(130)}
    finished = orders.start_execution("orders")
    orders.complete(finished)
    failed = orders.start_execution("orders", fail_at=0)
    orders.advance(steps=1, execution_id=failed)
    active = await make_client(orders.http_url).list_active_workflows()
    assert {e.execution_id for e in active} == running and len(active) == 130
    assert all(e.status is ExecutionState.RUNNING for e in active)
    assert orders.call_counts()["ListExecutions"] == 2  # 100 + 30


async def test_list_active_workflows_leaves_out_executions_waiting_for_approval(orders, make_client):
    # Listed as "running" by Core, but the status filter reads their own state, as gRPC does.
    running = orders.start_execution("orders")
    waiting = orders.start_execution("orders", approval_at=0)
    orders.advance(steps=1, execution_id=waiting)
    active = await make_client(orders.http_url).list_active_workflows()
    assert [e.execution_id for e in active] == [running]


async def test_resume_answers(orders, make_client):
    core = orders
    failed = core.start_execution("orders", fail_at="charge")
    completed = core.start_execution("orders")
    running = core.start_execution("orders", fail_at="notify")
    core.run_until_settled(failed)
    core.run_until_settled(completed)
    client = make_client(core.http_url)
    assert await client.resume_execution(failed) == "resumed"
    assert await client.resume_execution(failed) == "already_running"
    assert await client.resume_execution(running) == "already_running"
    assert await client.resume_execution(completed) == "failed_to_resume"
    assert await client.resume_execution("unknown-id") == "failed_to_resume"
    assert core.resume_count(failed) == 1
    assert (await client.get_execution_status(failed)).status is ExecutionState.RUNNING
    assert core.call_counts()["ResumeExecution"] == 5  # 422 answers are answers, not retried


async def test_resume_without_effect_as_the_real_release_answers(orders, make_client):
    failed = orders.start_execution("orders", fail_at=0)
    orders.run_until_settled(failed)
    orders.set_resume_without_effect("already_running")
    client = make_client(orders.http_url)
    assert await client.resume_execution(failed) == "already_running"
    assert (await client.get_execution_status(failed)).status is ExecutionState.FAILED


async def test_execute_workflow_starts_an_execution(orders, make_client):
    client = make_client(orders.http_url)
    handle = await client.execute_workflow("orders", {"n": 5, "nested": {"a": [1, "x", None]}})
    assert handle.execution_id and handle.status == "started"
    assert orders.status(handle.execution_id).inputs == {"n": 5, "nested": {"a": [1, "x", None]}}
    events = await client.get_execution_events(handle.execution_id)
    assert events[0]["type"] == "ExecutionStartedEvent"
    assert events[0]["data"]["inputs"] == {"n": 5, "nested": {"a": [1, "x", None]}}
    status = await client.get_execution_status(handle.execution_id)
    assert (status.status, status.total_steps) == (ExecutionState.RUNNING, 4)


async def test_execute_workflow_without_inputs_sends_an_empty_object(orders, make_client):
    handle = await make_client(orders.http_url).execute_workflow("orders")
    assert orders.status(handle.execution_id).inputs == {}


async def test_execute_unknown_workflow_raises_workflow_start_error(core_factory, make_client):
    core = core_factory(accept_any_workflow=False)
    with pytest.raises(WorkflowStartError, match="ghost") as caught:
        await make_client(core.http_url).execute_workflow("ghost")
    assert "workflow_not_found" in str(caught.value) and core.http_url in str(caught.value)
    assert core.call_counts()["ExecuteWorkflow"] == 1
    assert core.execution_ids() == []


@pytest.mark.parametrize(
    ("option", "value"), [("correlation_id", "c-1"), ("tags", ["nightly"]), ("timeout_ms", 5_000)]
)
async def test_execute_options_rest_cannot_carry_are_refused_before_sending(
    orders, make_client, option, value
):
    with pytest.raises(ValueError, match=option) as caught:
        await make_client(orders.http_url).execute_workflow("orders", {"n": 1}, **{option: value})
    assert "HTTP API" in str(caught.value)
    assert orders.call_counts() == {} and orders.execution_ids() == []


async def test_execute_options_all_named_in_one_error(orders, make_client):
    with pytest.raises(ValueError, match="correlation_id, tags, timeout_ms"):
        await make_client(orders.http_url).execute_workflow(
            "orders", correlation_id="c", tags=[], timeout_ms=1
        )
    assert orders.call_counts() == {}


async def test_stop_execution(orders, make_client):
    execution_id = orders.start_execution("orders")
    client = make_client(orders.http_url)
    assert await client.stop_execution(execution_id) == "stopped"
    assert orders.stopped(execution_id)
    # Core ends the process; a second stop finds none.
    with pytest.raises(ExecutionNotFoundError, match="running process"):
        await client.stop_execution(execution_id)
    with pytest.raises(ExecutionNotFoundError):
        await client.stop_execution("unknown-id")
    assert orders.call_counts()["StopExecution"] == 3


async def test_approve_execution_hands_the_response_to_the_step(orders, make_client):
    execution_id = orders.start_execution("orders", approval_at="charge")
    orders.run_until_settled(execution_id)
    client = make_client(orders.http_url)
    response = {"approved_by": "ops", "limit": 10, "notes": ["ok"]}
    assert await client.approve_execution(execution_id, response) == "approved"
    assert orders.approval_response(execution_id) == response
    orders.run_until_settled(execution_id)
    assert (await client.get_execution_status(execution_id)).status is ExecutionState.COMPLETED
    # The state was read first (one status query), then the approval sent once.
    assert orders.call_counts()["ApproveExecution"] == 1
    assert orders.call_counts()["GetExecutionStatus"] == 2


@pytest.mark.parametrize("state", ["running", "completed", "failed"])
async def test_approve_refused_before_sending_when_not_waiting(orders, make_client, state):
    execution_id = orders.start_execution("orders", fail_at="ship" if state == "failed" else None)
    if state != "running":
        orders.run_until_settled(execution_id)
    with pytest.raises(RequestRefusedError, match="not waiting for approval") as caught:
        await make_client(orders.http_url).approve_execution(execution_id, {"ok": True})
    assert "nothing was sent" in str(caught.value) and caught.value.execution_id == execution_id
    assert "ApproveExecution" not in orders.call_counts()
    assert orders.approval_response(execution_id) is None


async def test_approve_unknown_execution_is_not_found_before_sending(orders, make_client):
    with pytest.raises(ExecutionNotFoundError):
        await make_client(orders.http_url).approve_execution("unknown-id")
    assert "ApproveExecution" not in orders.call_counts()


async def test_approve_response_with_an_id_key_is_refused(orders, make_client):
    with pytest.raises(ValueError, match="'id'"):
        await make_client(orders.http_url).approve_execution("any", {"id": "x"})
    assert orders.call_counts() == {}


async def test_get_execution_events(orders, make_client):
    execution_id = orders.start_execution("orders", inputs={"k": "v"})
    orders.advance(steps=2, execution_id=execution_id)
    events = await make_client(orders.http_url).get_execution_events(execution_id)
    assert [event["type"] for event in events] == [
        "ExecutionStartedEvent",
        "StepExecutedEvent",
        "StepExecutedEvent",
    ]
    assert [event["version"] for event in events] == [0, 1, 2]
    assert events[0]["data"]["inputs"] == {"k": "v"}
    assert [event["data"]["step_name"] for event in events[1:]] == ["validate", "charge"]
    assert all(event["timestamp"].endswith("Z") for event in events)


async def test_the_event_log_gives_the_completed_steps_in_order(orders, make_client):
    # Core's REST status gives the completed steps' outputs only; its event log has their order.
    execution_id = orders.start_execution("orders", fail_at="ship")
    orders.run_until_settled(execution_id)
    client = make_client(orders.http_url)
    assert await client.resume_execution(execution_id) == "resumed"
    orders.run_until_settled(execution_id)
    status = await client.get_execution_status(execution_id)
    events = await client.get_execution_events(execution_id)

    steps = completed_steps_from_events(events)

    assert status.completed_steps == [] and set(status.step_outputs) == set(STEPS)
    assert [(step.step_index, step.step_name, step.status) for step in steps] == [
        (index, name, "completed") for index, name in enumerate(STEPS)
    ]
    assert [step.output for step in steps] == [status.step_outputs[name] for name in STEPS]
    failed_at = next(event for event in events if event["type"] == "StepFailedEvent")
    assert failed_at["data"]["step_name"] == "ship"  # its failed run is not a completed step


async def test_events_of_an_unknown_id_are_not_found(orders, make_client):
    # Core answers 200 with no events for an id it does not know.
    with pytest.raises(ExecutionNotFoundError, match="event log is empty"):
        await make_client(orders.http_url).get_execution_events("unknown-id")
    assert orders.call_counts()["GetExecutionEvents"] == 1


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("stop_execution", ("exec-1",)),
        ("approve_execution", ("exec-1", {"ok": True})),
        ("get_execution_events", ("exec-1",)),
    ],
)
async def test_rest_only_calls_over_grpc_are_refused_before_sending(orders, make_client, method, args):
    execution_id = orders.start_execution("orders", approval_at=0)
    orders.advance(steps=1, execution_id=execution_id)
    client = make_client(orders.address)
    assert client.client.api is CoreAPI.GRPC
    with pytest.raises(UnsupportedOperationError, match="http://") as caught:
        await getattr(client, method)(*(execution_id if arg == "exec-1" else arg for arg in args))
    assert caught.value.core_address == orders.address
    assert orders.call_counts() == {} and orders.peers() == set()
    assert orders.approval_response(execution_id) is None and not orders.stopped(execution_id)


async def test_wrong_path_prefix_is_no_missing_execution(orders, make_client):
    # Phoenix answers an unknown route 404 {"errors": {"detail": "Not Found"}}; Core's own 404s
    # carry an "error" word. A wrong prefix must not read as "no such execution" or "not resumed".
    execution_id = orders.start_execution("orders", fail_at=0)
    orders.run_until_settled(execution_id)
    client = make_client(f"{orders.http_url}/cerebelum")
    for method, argument in (
        ("get_execution_status", execution_id),
        ("resume_execution", execution_id),
        ("execute_workflow", "orders"),
        ("stop_execution", execution_id),
        ("get_execution_events", execution_id),
    ):
        with pytest.raises(CerebelumRPCError, match="no route") as caught:
            await getattr(client, method)(argument)
        assert type(caught.value) is CerebelumRPCError and caught.value.code == ErrorCode.NOT_FOUND
        assert "/cerebelum" in str(caught.value)
    assert orders.call_counts() == {} and orders.resume_count(execution_id) == 0
