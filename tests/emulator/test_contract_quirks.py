"""Each quirk of ../shared/core-contract.md, pinned over a raw stub: one test per quirk."""

from __future__ import annotations

from datetime import datetime, timezone

import grpc
import pytest
from google.protobuf import json_format

from cerebelum_provider.proto import worker_service_pb2 as pb
from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

ORDERS = ["validate", "charge", "ship", "notify"]


@pytest.fixture(autouse=True)
def orders_workflow(core):
    core.define_workflow("orders", ORDERS)


def get(stub, execution_id):
    return stub.GetExecutionStatus(pb.GetExecutionStatusRequest(execution_id=execution_id), timeout=5)


def list_ids(stub, **fields):
    answer = stub.ListExecutions(pb.ListExecutionsRequest(**fields), timeout=5)
    return [execution.execution_id for execution in answer.executions], answer


def resume(stub, execution_id):
    return stub.ResumeExecution(pb.ResumeExecutionRequest(execution_id=execution_id), timeout=5).status


# GetExecutionStatus ---------------------------------------------------------------------------


def test_unknown_id_is_answered_ok_with_a_not_found_error(stub):
    answer = get(stub, "no-such-execution")
    assert answer.status == pb.EXECUTION_STATE_UNSPECIFIED
    assert answer.workflow_name == "unknown"
    assert answer.error.kind == "not_found"
    assert answer.error.message == "Execution no-such-execution not found"


def test_state_that_cannot_be_rebuilt_is_failed_with_reconstruction_error(core, stub):
    execution_id = core.start_execution("orders")
    core.corrupt(execution_id)
    answer = get(stub, execution_id)
    assert answer.status == pb.EXECUTION_FAILED
    assert answer.error.kind == "reconstruction_error"


def test_a_malformed_first_event_is_also_a_reconstruction_error(core, stub):
    core.engine.append_raw_event(
        "odd", "execution_started", {"workflow_name": "orders", "steps": ["a"], "inputs": [1]}
    )
    answer = get(stub, "odd")
    assert (answer.status, answer.error.kind) == (pb.EXECUTION_FAILED, "reconstruction_error")
    assert resume(stub, "odd") == "failed_to_resume"


def test_error_comes_first_in_state_derivation_even_for_a_finished_execution(core, stub):
    execution_id = core.start_execution("orders")
    core.complete(execution_id)
    assert get(stub, execution_id).status == pb.EXECUTION_COMPLETED
    core.corrupt(execution_id)
    assert get(stub, execution_id).status == pb.EXECUTION_FAILED


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, pb.EXECUTION_RUNNING),
        ({"fail_at": "charge"}, pb.EXECUTION_FAILED),
        ({"sleep_at": "charge"}, pb.EXECUTION_SLEEPING),
        ({"approval_at": "charge"}, pb.EXECUTION_WAITING_FOR_APPROVAL),
    ],
)
def test_each_live_state_is_derived_and_only_its_own_info_is_set(core, stub, kwargs, expected):
    execution_id = core.start_execution("orders", **kwargs)
    core.advance(2, execution_id)
    answer = get(stub, execution_id)
    assert answer.status == expected
    assert answer.HasField("error") == (expected == pb.EXECUTION_FAILED)
    assert answer.HasField("sleep_info") == (expected == pb.EXECUTION_SLEEPING)
    assert answer.HasField("approval_info") == (expected == pb.EXECUTION_WAITING_FOR_APPROVAL)


def test_finished_execution_index_equals_total_steps_and_step_name_is_empty(core, stub):
    execution_id = core.start_execution("orders")
    core.run_until_settled(execution_id)
    answer = get(stub, execution_id)
    assert answer.status == pb.EXECUTION_COMPLETED
    assert (answer.current_step_index, answer.total_steps, answer.current_step_name) == (4, 4, "")
    assert answer.HasField("completed_at")


def test_current_step_index_is_zero_based(core, stub):
    execution_id = core.start_execution("orders")
    assert (get(stub, execution_id).current_step_index, get(stub, execution_id).current_step_name) == (
        0,
        "validate",
    )
    core.advance(1, execution_id)
    assert (get(stub, execution_id).current_step_index, get(stub, execution_id).current_step_name) == (
        1,
        "charge",
    )


def test_completed_steps_are_the_steps_before_the_current_index_without_timings(core, stub):
    execution_id = core.start_execution("orders")
    core.advance(2, execution_id)
    answer = get(stub, execution_id)
    assert [(step.step_name, step.step_index, step.status) for step in answer.completed_steps] == [
        ("validate", 0, "completed"),
        ("charge", 1, "completed"),
    ]
    for step in answer.completed_steps:
        assert not step.HasField("started_at")
        assert not step.HasField("completed_at")
        assert step.duration_seconds == 0


def test_sleep_remaining_ms_is_computed_at_query_time(core, stub):
    execution_id = core.start_execution("orders", sleep_at=0, sleep_ms=10_000)
    core.advance(1, execution_id)
    assert get(stub, execution_id).sleep_info.remaining_ms == 10_000
    core.advance_time(4)
    answer = get(stub, execution_id)
    assert answer.sleep_info.duration_ms == 10_000
    assert answer.sleep_info.remaining_ms == 6_000


def test_approval_remaining_timeout_ms_is_computed_at_query_time(core, stub):
    execution_id = core.start_execution("orders", approval_at=0, approval_timeout_ms=60_000)
    core.advance(1, execution_id)
    core.advance_time(15)
    answer = get(stub, execution_id)
    assert answer.approval_info.timeout_ms == 60_000
    assert answer.approval_info.remaining_timeout_ms == 45_000


def test_struct_numbers_come_back_as_doubles(core, stub):
    execution_id = core.start_execution("orders", inputs={"order_id": 123, "name": "x"})
    inputs = json_format.MessageToDict(get(stub, execution_id).inputs)
    assert inputs == {"order_id": 123.0, "name": "x"}
    assert isinstance(inputs["order_id"], float)


def test_timestamps_are_utc_and_completed_at_is_unset_until_finished(core, stub):
    execution_id = core.start_execution("orders")
    answer = get(stub, execution_id)
    assert answer.HasField("started_at")
    assert not answer.HasField("completed_at")
    started = answer.started_at.ToDatetime(tzinfo=timezone.utc)
    assert abs((started - datetime.now(timezone.utc)).total_seconds()) < 60


# ListExecutions -------------------------------------------------------------------------------


def start_many(core, count, workflow="orders"):
    return [core.start_execution(workflow) for _ in range(count)]


@pytest.mark.parametrize("limit", [0, -5])
def test_list_limit_zero_or_less_means_50(core, stub, limit):
    start_many(core, 60)
    ids, answer = list_ids(stub, limit=limit)
    assert len(ids) == 50
    assert (answer.total_count, answer.has_more) == (60, True)


def test_list_limit_above_100_is_cut_to_100(core, stub):
    start_many(core, 120)
    ids, answer = list_ids(stub, limit=500)
    assert len(ids) == 100
    assert (answer.total_count, answer.has_more) == (120, True)


def test_list_negative_offset_means_zero(core, stub):
    start_many(core, 5)
    assert list_ids(stub, limit=3, offset=-7)[0] == list_ids(stub, limit=3, offset=0)[0]


def test_list_workflow_name_filters_whenever_present_even_empty(core, stub):
    orders = start_many(core, 2, "orders")
    billing = start_many(core, 1, "billing")
    assert list_ids(stub, workflow_name="")[1].total_count == 0
    assert sorted(list_ids(stub, workflow_name="orders")[0]) == sorted(orders)
    assert sorted(list_ids(stub)[0]) == sorted(orders + billing)


def test_list_status_unspecified_or_absent_means_no_filter(core, stub):
    running = core.start_execution("orders")
    failed = core.start_execution("orders", fail_at=0)
    core.advance(1, failed)
    everything = sorted([running, failed])
    assert sorted(list_ids(stub)[0]) == everything
    assert sorted(list_ids(stub, status=pb.EXECUTION_STATE_UNSPECIFIED)[0]) == everything
    assert list_ids(stub, status=pb.EXECUTION_FAILED)[0] == [failed]
    assert list_ids(stub, status=pb.EXECUTION_PAUSED)[1].total_count == 0


def test_list_order_is_execution_id_text_order_and_stays_put_when_an_execution_changes(core, stub):
    ids = ["c-3", "a-1", "b-2", "B-0"]
    for execution_id in ids:
        core.start_execution("orders", fail_at=0, execution_id=execution_id)
    core.advance(1, "b-2")
    assert list_ids(stub)[0] == sorted(ids) == ["B-0", "a-1", "b-2", "c-3"]
    assert resume(stub, "b-2") == "resumed"
    core.advance(1)
    assert list_ids(stub)[0] == sorted(ids)
    assert list_ids(stub, limit=2, offset=1)[0] == ["a-1", "b-2"]
    assert list_ids(stub, status=pb.EXECUTION_FAILED)[0] == ["B-0", "a-1", "c-3"]


def test_list_total_count_counts_all_matches_and_has_more_says_if_a_page_follows(core, stub):
    start_many(core, 7)
    ids, answer = list_ids(stub, limit=3, offset=3)
    assert (len(ids), answer.total_count, answer.has_more) == (3, 7, True)
    ids, answer = list_ids(stub, limit=3, offset=6)
    assert (len(ids), answer.total_count, answer.has_more) == (1, 7, False)
    ids, answer = list_ids(stub, limit=3, offset=50)
    assert (len(ids), answer.total_count, answer.has_more) == (0, 7, False)


def test_list_internal_error_is_answered_ok_with_an_empty_list(core, stub):
    start_many(core, 3)
    core.break_listing(True)
    ids, answer = list_ids(stub)
    assert (ids, answer.total_count, answer.has_more) == ([], 0, False)


def test_listed_executions_are_whole_statuses(core, stub):
    execution_id = core.start_execution("orders", inputs={"n": 1})
    core.advance(1, execution_id)
    (listed,) = stub.ListExecutions(pb.ListExecutionsRequest(), timeout=5).executions
    assert listed == get(stub, execution_id)


# ResumeExecution ------------------------------------------------------------------------------


def test_resume_of_a_failed_execution_answers_resumed(core, stub):
    execution_id = core.start_execution("orders", fail_at="charge")
    core.run_until_settled(execution_id)
    answer = stub.ResumeExecution(pb.ResumeExecutionRequest(execution_id=execution_id), timeout=5)
    assert (answer.execution_id, answer.status) == (execution_id, "resumed")
    assert get(stub, execution_id).status == pb.EXECUTION_RUNNING


@pytest.mark.parametrize(
    "kwargs", [{}, {"sleep_at": 0}, {"approval_at": 0}], ids=["running", "sleeping", "waiting"]
)
def test_resume_of_a_live_execution_answers_already_running(core, stub, kwargs):
    execution_id = core.start_execution("orders", **kwargs)
    core.advance(1 if kwargs else 0, execution_id)
    assert resume(stub, execution_id) == "already_running"
    assert core.resume_count(execution_id) == 0


def test_resume_of_an_unknown_or_completed_execution_answers_failed_to_resume(core, stub):
    completed = core.start_execution("orders")
    core.complete(completed)
    assert resume(stub, completed) == "failed_to_resume"
    assert resume(stub, "no-such-execution") == "failed_to_resume"


def test_resuming_twice_answers_already_running_the_second_time(core, stub):
    execution_id = core.start_execution("orders", fail_at=0)
    core.advance(1, execution_id)
    assert [resume(stub, execution_id), resume(stub, execution_id)] == ["resumed", "already_running"]
    assert core.resume_count(execution_id) == 1


def test_resume_skips_completed_steps(core, stub):
    execution_id = core.start_execution("orders", fail_at="ship")
    core.run_until_settled(execution_id)
    stub.ResumeExecution(
        pb.ResumeExecutionRequest(execution_id=execution_id, skip_completed_steps=True), timeout=5
    )
    answer = get(stub, execution_id)
    assert (answer.current_step_index, answer.current_step_name) == (2, "ship")
    assert [step.step_name for step in answer.completed_steps] == ["validate", "charge"]


# ExecuteWorkflow ------------------------------------------------------------------------------


def test_execute_workflow_answers_running_with_a_new_execution_id(core, stub):
    handle = stub.ExecuteWorkflow(pb.ExecuteRequest(workflow_module="orders"), timeout=5)
    assert handle.status == "running"
    assert handle.HasField("started_at")
    assert get(stub, handle.execution_id).status == pb.EXECUTION_RUNNING


def test_execute_unknown_workflow_answers_ok_failed_with_an_error_id_naming_no_execution(core_factory):
    strict = core_factory(accept_any_workflow=False)
    with grpc.insecure_channel(strict.address) as channel:
        strict_stub = pb_grpc.WorkerServiceStub(channel)
        handles = [
            strict_stub.ExecuteWorkflow(pb.ExecuteRequest(workflow_module="nope"), timeout=5)
            for _ in range(2)
        ]
        assert [handle.status for handle in handles] == ["failed", "failed"]
        assert [handle.execution_id for handle in handles] == ["error_1", "error_2"]
        assert get(strict_stub, "error_1").error.kind == "not_found"
    assert strict.execution_ids() == []


def test_execute_ignores_options_execution_id_so_a_retry_starts_a_second_execution(core, stub):
    request = pb.ExecuteRequest(
        workflow_module="orders", options=pb.ExecutionOptions(execution_id="my-id", correlation_id="c1")
    )
    first = stub.ExecuteWorkflow(request, timeout=5)
    second = stub.ExecuteWorkflow(request, timeout=5)
    assert "my-id" not in (first.execution_id, second.execution_id)
    assert first.execution_id != second.execution_id
    assert len(core.execution_ids()) == 2


def test_execute_keeps_inputs_which_come_back_as_doubles(core, stub):
    request = pb.ExecuteRequest(workflow_module="orders")
    request.inputs.update({"n": 5})
    handle = stub.ExecuteWorkflow(request, timeout=5)
    assert json_format.MessageToDict(get(stub, handle.execution_id).inputs) == {"n": 5.0}


# SubmitBlueprint and worker RPCs --------------------------------------------------------------


def test_submitted_blueprint_defines_the_steps_of_new_executions(core_factory):
    strict = core_factory(accept_any_workflow=False)
    with grpc.insecure_channel(strict.address) as channel:
        strict_stub = pb_grpc.WorkerServiceStub(channel)
        blueprint = pb.Blueprint(
            workflow_module="etl",
            language="python",
            definition=pb.WorkflowDefinition(timeline=[pb.Step(name="extract"), pb.Step(name="load")]),
        )
        validation = strict_stub.SubmitBlueprint(blueprint, timeout=5)
        assert validation.valid and validation.workflow_hash
        handle = strict_stub.ExecuteWorkflow(pb.ExecuteRequest(workflow_module="etl"), timeout=5)
        answer = get(strict_stub, handle.execution_id)
    assert (handle.status, answer.total_steps, answer.current_step_name) == ("running", 2, "extract")


def test_blueprint_without_steps_is_invalid_and_defines_nothing(core_factory):
    strict = core_factory(accept_any_workflow=False)
    with grpc.insecure_channel(strict.address) as channel:
        strict_stub = pb_grpc.WorkerServiceStub(channel)
        validation = strict_stub.SubmitBlueprint(pb.Blueprint(workflow_module="empty"), timeout=5)
        handle = strict_stub.ExecuteWorkflow(pb.ExecuteRequest(workflow_module="empty"), timeout=5)
    assert not validation.valid and validation.errors
    assert handle.status == "failed"


@pytest.mark.parametrize(
    ("rpc", "request_type"),
    [
        ("Register", pb.RegisterRequest),
        ("Heartbeat", pb.HeartbeatRequest),
        ("Unregister", pb.UnregisterRequest),
        ("PollForTask", pb.PollRequest),
        ("SubmitResult", pb.TaskResult),
    ],
)
def test_worker_rpcs_answer_unimplemented(stub, rpc, request_type):
    with pytest.raises(grpc.RpcError) as raised:
        getattr(stub, rpc)(request_type(), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
