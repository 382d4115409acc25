"""Core's REST API as the emulator serves it: every route, JSON shape and status code, pinned with raw
httpx calls (../shared/real-core/README.md, REST table; Core's ExecutionController)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

EXECUTIONS = "/api/v1/executions"
STEPS = ["validate", "charge", "ship", "notify"]


def running(core) -> str:
    execution_id = core.start_execution("orders", {"order": 7})
    core.advance(1, execution_id)
    return execution_id


def completed(core) -> str:
    execution_id = core.start_execution("orders")
    core.complete(execution_id)
    return execution_id


def failed(core) -> str:
    execution_id = core.start_execution("orders", fail_at="charge", error_message="card declined")
    core.run_until_settled(execution_id)
    return execution_id


def waiting(core) -> str:
    execution_id = core.start_execution("orders", approval_at="charge")
    core.run_until_settled(execution_id)
    return execution_id


def sleeping(core) -> str:
    execution_id = core.start_execution("orders", sleep_at="charge")
    core.run_until_settled(execution_id)
    return execution_id


def unknown(core) -> str:
    return "no-such-execution"


@pytest.fixture(autouse=True)
def orders(core):
    core.define_workflow("orders", STEPS)


@dataclass(frozen=True)
class Case:
    setup: Callable[[Any], str]
    method: str
    path: str
    status: int
    body: dict[str, Any]
    payload: Any = None

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.setup.__name__}) -> {self.status}"


SHOW_CASES = [
    Case(
        running,
        "GET",
        "/{id}",
        200,
        {"state": "running", "progress": "1/4", "current_step": "charge", "current_step_data": None,
         "results": {"validate": {"step": "validate", "ok": True}}, "error": None},
    ),
    Case(
        completed,
        "GET",
        "/{id}",
        200,
        # No step is current any more: Core falls back to the last step row, and its result.
        {"state": "completed", "progress": "4/4", "current_step": "notify",
         "current_step_data": {"step": "notify", "ok": True}, "error": None},
    ),
    Case(
        failed,
        "GET",
        "/{id}",
        200,
        {"state": "failed", "progress": "1/4", "current_step": "charge",
         "error": "Exception in step :charge - step_error: card declined"},
    ),
    Case(waiting, "GET", "/{id}", 200, {"state": "waiting_for_approval", "progress": "1/4"}),
    Case(sleeping, "GET", "/{id}", 200, {"state": "sleeping", "progress": "1/4"}),
    Case(
        unknown,
        "GET",
        "/{id}",
        404,
        {"error": "not_found", "message": "Execution no-such-execution not found"},
    ),
]

EVENTS_CASES = [
    Case(
        unknown, "GET", "/{id}/events", 200, {"execution_id": "no-such-execution", "count": 0, "events": []}
    ),
]

ACTION_CASES = [
    Case(failed, "POST", "/{id}/resume", 200, {"status": "resumed"}),
    Case(running, "POST", "/{id}/resume", 422, {"error": ":already_running"}),
    Case(waiting, "POST", "/{id}/resume", 422, {"error": ":already_running"}),
    Case(unknown, "POST", "/{id}/resume", 422, {"error": ":not_found"}),
    Case(completed, "POST", "/{id}/resume", 422, {"error": ":not_resumable"}),
    Case(running, "POST", "/{id}/stop", 200, {"status": "stopped"}),
    Case(failed, "POST", "/{id}/stop", 200, {"status": "stopped"}),
    Case(unknown, "POST", "/{id}/stop", 404, {"error": "not_found"}),
    Case(waiting, "POST", "/{id}/approve", 200, {"status": "approved"}, {"approved_by": "ann"}),
    Case(running, "POST", "/{id}/approve", 422, {"error": ":not_waiting_for_approval"}, {}),
    Case(unknown, "POST", "/{id}/approve", 422, {"error": ":not_found"}, {}),
    # A failed engine refuses with its error text, printed by Elixir's inspect (quoted).
    Case(
        failed,
        "POST",
        "/{id}/approve",
        422,
        {"error": '"Exception in step :charge - step_error: card declined"'},
        {},
    ),
]


@pytest.mark.parametrize("case", SHOW_CASES + EVENTS_CASES + ACTION_CASES, ids=str)
def test_execution_routes_answer_with_cores_codes_and_shapes(core, http, case):
    execution_id = case.setup(core)
    answer = http.request(case.method, EXECUTIONS + case.path.format(id=execution_id), json=case.payload)
    assert answer.status_code == case.status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert {key: body.get(key) for key in case.body} == case.body
    if case.status == 200 and case.method == "POST":
        assert body["execution_id"] == execution_id


def test_show_has_exactly_cores_keys(core, http):
    body = http.get(f"{EXECUTIONS}/{running(core)}").json()
    assert set(body) == {
        "execution_id", "state", "progress", "current_step", "current_step_data", "results", "error"
    }


def test_a_stopped_execution_stops_moving_but_stays_running_and_is_rebuilt_from_the_log(core, http):
    execution_id = running(core)
    assert http.post(f"{EXECUTIONS}/{execution_id}/stop").status_code == 200
    assert core.stopped(execution_id)
    core.advance(5)
    core.run_until_settled()
    assert core.status(execution_id).current_step_index == 1
    body = http.get(f"{EXECUTIONS}/{execution_id}").json()
    # No engine process: Core rebuilds from its rows: no "progress", and the step is the last row's.
    assert body["state"] == "running" and "progress" not in body
    assert body["current_step"] == "validate"
    assert http.post(f"{EXECUTIONS}/{execution_id}/stop").status_code == 404
    assert http.post(f"{EXECUTIONS}/{execution_id}/approve", json={}).json() == {"error": ":not_found"}
    # A resume starts a new process from the log: the execution goes on.
    assert http.post(f"{EXECUTIONS}/{execution_id}/resume").json()["status"] == "resumed"
    assert not core.stopped(execution_id)
    core.run_until_settled(execution_id)
    assert http.get(f"{EXECUTIONS}/{execution_id}").json()["state"] == "completed"


def test_approve_keeps_the_response_and_the_execution_goes_on(core, http):
    execution_id = waiting(core)
    answer = http.post(f"{EXECUTIONS}/{execution_id}/approve?note=ok", json={"approved_by": "ann", "id": "x"})
    assert answer.json() == {"execution_id": execution_id, "status": "approved"}
    # Query and body parameters reach Core's controller as one map, without "id".
    assert core.approval_response(execution_id) == {"approved_by": "ann", "note": "ok"}
    assert http.get(f"{EXECUTIONS}/{execution_id}").json()["state"] == "running"
    events = http.get(f"{EXECUTIONS}/{execution_id}/events").json()["events"]
    received = [event for event in events if event["type"] == "ApprovalReceivedEvent"]
    assert received[0]["data"]["approval_response"] == {"approved_by": "ann", "note": "ok"}
    # The step that asked runs again once approved, as in Core.
    assert core.step_runs(execution_id) == {"validate": 1, "charge": 2}


def test_events_are_cores_rows_with_versions_from_zero(core, http):
    execution_id = failed(core)
    body = http.get(f"{EXECUTIONS}/{execution_id}/events").json()
    assert body["execution_id"] == execution_id and body["count"] == len(body["events"]) == 4
    assert [event["type"] for event in body["events"]] == [
        "ExecutionStartedEvent", "StepExecutedEvent", "StepFailedEvent", "ExecutionFailedEvent"
    ]
    assert [event["version"] for event in body["events"]] == [0, 1, 2, 3]
    started = body["events"][0]
    assert set(started) == {"version", "type", "data", "timestamp"}
    assert started["timestamp"].endswith("Z")
    assert {key: started["data"][key] for key in ("inputs", "tags", "correlation_id", "blueprint_name")} == {
        "inputs": {}, "tags": [], "correlation_id": None, "blueprint_name": "orders"
    }
    assert started["data"]["workflow_module"] == "Elixir.Cerebelum.WorkflowDelegatingWorkflow"
    step = body["events"][1]["data"]
    assert (step["step_name"], step["step_index"]) == ("validate", 0)
    assert step["result"] == {"step": "validate", "ok": True}
    assert body["events"][3]["data"]["failed_step"] == "charge"


def test_sleep_and_approval_rows(core, http):
    asleep, asking = sleeping(core), waiting(core)
    core.advance_time(600)
    types = [event["type"] for event in http.get(f"{EXECUTIONS}/{asleep}/events").json()["events"]]
    assert types[-3:] == ["SleepStartedEvent", "SleepCompletedEvent", "StepExecutedEvent"]
    last = http.get(f"{EXECUTIONS}/{asking}/events").json()["events"][-1]
    assert last["type"] == "ApprovalRequestedEvent"
    assert last["data"]["step_name"] == "charge" and last["data"]["approval_data"] == {"step": "charge"}


# POST /api/v1/executions ------------------------------------------------------------------------


def test_create_starts_an_execution_and_answers_201(core, http):
    answer = http.post(EXECUTIONS, json={"workflow": "orders", "input": {"order": 1}})
    assert answer.status_code == 201
    data = answer.json()["data"]
    assert (data["status"], data["workflow"]) == ("started", "orders")
    assert core.status(data["id"]).inputs == {"order": 1}
    assert core.call_counts() == {"ExecuteWorkflow": 1}


def test_create_takes_cores_alternative_keys(core, http):
    answer = http.post(EXECUTIONS, json={"workflow_module": "orders", "inputs": {"n": 2}})
    assert answer.status_code == 201
    assert core.status(answer.json()["data"]["id"]).inputs == {"n": 2}


def test_create_of_an_unknown_workflow_is_404_when_only_defined_ones_are_accepted(core_factory):
    import httpx

    strict = core_factory(accept_any_workflow=False)
    strict.define_workflow("orders", STEPS)
    with httpx.Client(base_url=strict.http_url, timeout=5) as client:
        answer = client.post(EXECUTIONS, json={"workflow": "nope", "input": {}})
        assert answer.status_code == 404
        assert answer.json() == {"error": "workflow_not_found", "message": "Workflow 'nope' not registered"}
        missing = client.post(EXECUTIONS, json={"input": {}})
        assert missing.json()["message"] == "Workflow '' not registered"
        assert client.post(EXECUTIONS, json={"workflow": "orders"}).status_code == 201
    assert len(strict.execution_ids()) == 1


def test_create_refuses_input_that_is_not_an_object_and_a_body_that_is_not_json(core, http):
    bad_input = http.post(EXECUTIONS, json={"workflow": "orders", "input": [1, 2]})
    assert bad_input.status_code == 422
    assert bad_input.json() == {
        "error": "invalid_input",
        "message": "input must be a JSON object, got [1, 2]",
    }
    not_json = http.post(EXECUTIONS, content=b"{nope", headers={"content-type": "application/json"})
    assert (not_json.status_code, not_json.json()) == (400, {"errors": {"detail": "Bad Request"}})
    assert core.execution_ids() == []


# GET /api/v1/executions -------------------------------------------------------------------------


def listing(http, **params) -> tuple[list[dict], int]:
    answer = http.get(EXECUTIONS, params=params)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"executions", "total"}
    return body["executions"], body["total"]


def test_list_summaries_have_cores_keys_and_read_the_status_from_the_latest_row(core, http):
    ids = {name: setup(core) for name, setup in
           [("running", running), ("completed", completed), ("failed", failed), ("waiting", waiting),
            ("sleeping", sleeping)]}
    summaries, total = listing(http)
    assert total == 5
    by_id = {summary["id"]: summary for summary in summaries}
    assert set(by_id[ids["running"]]) == {
        "execution_id", "id", "workflow", "status", "current_step", "current_step_data", "events_count"
    }
    assert {name: by_id[execution_id]["status"] for name, execution_id in ids.items()} == {
        "running": "running", "completed": "completed", "failed": "failed",
        # Waiting for approval and sleeping list as running: neither latest row is terminal.
        "waiting": "running", "sleeping": "running",
    }
    assert by_id[ids["running"]]["workflow"] == "orders"
    assert by_id[ids["running"]]["current_step"] == "validate"
    assert by_id[ids["running"]]["events_count"] == 2
    assert by_id[ids["waiting"]]["current_step"] == "charge"
    assert by_id[ids["waiting"]]["current_step_data"] == {"step": "charge"}


def test_list_status_filter_matches_the_latest_row_as_core_does(core, http):
    ids = {name: setup(core) for name, setup in
           [("running", running), ("completed", completed), ("failed", failed), ("waiting", waiting),
            ("sleeping", sleeping)]}

    def listed(status):
        return {summary["id"] for summary in listing(http, status=status)[0]}

    # "running" leaves out executions whose latest row is a sleep or an approval request,
    # although their summaries say "running": Core's filter and summary disagree.
    assert listed("running") == {ids["running"]}
    assert listed("completed") == {ids["completed"]}
    assert listed("failed") == {ids["failed"]}
    assert listed("waiting_for_approval") == {ids["waiting"]}
    assert listed("sleeping") == {ids["sleeping"]}
    # Any other word (Core turns it into an atom) matches nothing: 200 and an empty page.
    assert listing(http, status="RUNNING") == ([], 0)
    assert listing(http, status="") == ([], 0)


def test_list_pages_in_execution_id_order_with_cores_limit_and_offset_rules(core, http):
    ids = [core.start_execution("orders", execution_id=f"exec-{n:03}") for n in (5, 1, 4, 2, 3)]
    assert [s["id"] for s in listing(http)[0]] == sorted(ids)
    assert [s["id"] for s in listing(http, limit=2, offset=1)[0]] == ["exec-002", "exec-003"]
    assert listing(http, limit=2, offset=1)[1] == 5
    assert [s["id"] for s in listing(http, offset=-3, limit=1)[0]] == ["exec-001"]
    assert listing(http, limit=0)[0] == []
    # Elixir's Enum.take with a negative count takes from the end of what is left.
    assert [s["id"] for s in listing(http, limit=-2)[0]] == ["exec-004", "exec-005"]
    not_a_number = http.get(EXECUTIONS, params={"limit": "ten"})
    assert not_a_number.status_code == 500
    assert not_a_number.json() == {"errors": {"detail": "Internal Server Error"}}


def test_list_caps_the_limit_at_100(core, http):
    core.load_scenario({"executions": [{"workflow": "orders", "count": 120}]})
    summaries, total = listing(http, limit=500)
    assert (len(summaries), total) == (100, 120)
    assert len(listing(http)[0]) == 50


def test_list_workflow_filter_is_exact_and_an_empty_name_matches_nothing(core, http):
    order = core.start_execution("orders")
    core.start_execution("billing")
    assert [s["id"] for s in listing(http, workflow="orders")[0]] == [order]
    assert listing(http, workflow="") == ([], 0)


# Open routes and unknown paths ------------------------------------------------------------------


def test_health_and_workflows_need_no_token_and_are_not_counted(core_factory):
    import httpx

    locked = core_factory(token="s3cret")
    locked.define_workflow("orders", STEPS)
    with httpx.Client(base_url=locked.http_url, timeout=5) as client:
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        workflows = client.get("/api/v1/workflows").json()["data"]
        assert [(w["id"], w["steps"]) for w in workflows] == [("orders", STEPS)]
    assert locked.call_counts() == {}


def test_unknown_paths_and_methods_answer_phoenixs_404(http):
    assert http.get("/api/v1/nothing").json() == {"errors": {"detail": "Not Found"}}
    assert http.delete(EXECUTIONS).status_code == 404
