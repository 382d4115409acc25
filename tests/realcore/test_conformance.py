"""Conformance table: what the real Cerebelum Core release be56c90 does today, over gRPC and REST.

Each row pins one point of /work/shared/core-contract.md or of the real Core's README, as this
release measured it, talking to the real Core with a raw gRPC stub (``grpc.insecure_channel``) or
raw ``httpx``: no code of this project's client is involved. Where Core is broken (status queries
answer UNKNOWN, resume runs nothing), the row pins the breakage, so that a new release that fixes
or changes it fails here and says which point moved. Test ids start with the release.

The rows share one stack and a :class:`Scenario` that starts the executions they look at once:
a completed ``rc_ok``, a failed ``rc_fail`` (its ``boom`` step raises), an ``rc_ask`` waiting for
approval. Rows that change an execution (approve, stop) start their own. The rows after a Core
restart come last: the restart ends every engine process, which the earlier rows rely on.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import wraps
from typing import Any

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf import struct_pb2
from real_core import RealCore, RealCoreError

from cerebelum_provider.client._rest_convert import completed_steps_from_events
from cerebelum_provider.proto import worker_service_pb2 as pb
from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.realcore

RELEASE = "be56c90"
UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
BOOM_ERROR = "Exception in step :boom - RuntimeError: kaboom from python step"
INTERNAL_ERROR = {"errors": {"detail": "Internal Server Error"}}
# long enough for the worker (polling every 2 s at most, idle here) to pick up a step Core queued
QUIET_PERIOD = 1.5


def _rpc(method: Callable[..., Any], request: Any) -> Any:
    """The response, or the grpc.RpcError the call raised (rows pin both)."""
    try:
        return method(request, timeout=10)
    except grpc.RpcError as error:
        return error


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def _once(make: Callable[[Scenario], Any]) -> property:
    """A property computed on first use; a failure is kept too, so one restart is never tried twice."""
    attribute = f"_once_{make.__name__}"

    @wraps(make)
    def get(self: Scenario) -> Any:
        if attribute not in self.__dict__:
            try:
                self.__dict__[attribute] = (make(self), None)
            except (AssertionError, RealCoreError, grpc.RpcError, httpx.HTTPError) as error:
                self.__dict__[attribute] = (None, error)
        value, error = self.__dict__[attribute]
        if error is not None:
            raise error
        return value

    return property(get)


def _assert_internal_error(answer: Any) -> None:
    assert isinstance(answer, grpc.RpcError), f"expected UNKNOWN, got an answer: {answer}"
    assert (answer.code(), answer.details()) == (grpc.StatusCode.UNKNOWN, "Internal Server Error")


def _post_on_own_connection(
    core: RealCore, path: str, **kwargs: Any
) -> httpx.Response | httpx.TransportError:
    """POST on a connection of its own: for calls that crash Core's handler and may lose the connection."""
    try:
        return httpx.post(core.http_url + path, headers=core.auth_headers, timeout=15, **kwargs)
    except httpx.TransportError as error:
        return error


def _assert_handler_crashed(answer: httpx.Response | httpx.TransportError) -> None:
    """Core's request handler crashed: Phoenix answers 500, or the connection ends before it can."""
    if isinstance(answer, httpx.TransportError):
        assert isinstance(answer, (httpx.ReadError, httpx.RemoteProtocolError)), repr(answer)
    else:
        assert (answer.status_code, answer.json()) == (500, INTERNAL_ERROR)


class Scenario:
    """The executions and observations the rows share, each made once, when a row first asks."""

    def __init__(self, core: RealCore, stub: pb_grpc.WorkerServiceStub) -> None:
        self.core = core
        self.stub = stub

    @_once
    def settled(self) -> dict[str, str]:
        """Execution ids by what they are: completed, failed, waiting (REST), grpc_completed."""
        core = self.core
        ids = {
            "completed": core.start_execution("rc_ok", {"order": 7, "flag": True}),
            "failed": core.start_execution("rc_fail", {"order": 8}),
            "waiting": core.start_execution("rc_ask", {"order": 9}),
        }
        handle = self.stub.ExecuteWorkflow(
            pb.ExecuteRequest(workflow_module="rc_ok", inputs=_struct({"order": 10, "flag": True})),
            timeout=10,
        )
        ids["grpc_completed"] = handle.execution_id
        core.wait_for_state(ids["completed"], {"completed"})
        core.wait_for_state(ids["grpc_completed"], {"completed"})
        core.wait_for_state(ids["failed"], {"failed"})
        core.wait_for_state(ids["waiting"], {"waiting_for_approval"})
        for name, last_event in (("completed", "ExecutionCompletedEvent"),
                                 ("grpc_completed", "ExecutionCompletedEvent"),
                                 ("failed", "ExecutionFailedEvent"), ("waiting", "ApprovalRequestedEvent")):
            core.wait_for_event(ids[name], last_event)
        return ids

    @_once
    def listed(self) -> list[str]:
        """Three completed executions of ``rc_list``, a workflow no other row starts."""
        self.core.add_blueprint("rc_list", ["ok_a"])
        ids = [self.core.start_execution("rc_list", {"n": index}) for index in range(3)]
        for execution_id in ids:
            self.core.wait_for_state(execution_id, {"completed"})
            self.core.wait_for_event(execution_id, "ExecutionCompletedEvent")
        return ids

    @_once
    def stopped(self) -> dict[str, Any]:
        """An ``rc_ask`` execution stopped while waiting for approval, and what Core said."""
        execution_id = self.core.start_execution("rc_ask", {})
        self.core.wait_for_state(execution_id, {"waiting_for_approval"})
        answer = self.core.http.post(f"/api/v1/executions/{execution_id}/stop")
        time.sleep(QUIET_PERIOD)
        return {"id": execution_id, "answer": answer, "view": self.core.execution(execution_id)}

    @_once
    def after_restart(self) -> dict[str, Any]:
        """One Core restart, and what Core answered right after it, in this order."""
        ids = self.settled
        core = self.core
        seen: dict[str, Any] = {"restart_seconds": core.restart()}
        seen["completed_view"] = core.http.get(f"/api/v1/executions/{ids['completed']}")
        seen["failed_view"] = core.http.get(f"/api/v1/executions/{ids['failed']}")
        seen["resume_before_seed"] = _post_on_own_connection(
            core, f"/api/v1/executions/{ids['failed']}/resume"
        )
        # the failed execution's step names must be known to this boot of Core before it can rebuild it
        seed = core.start_execution("rc_fail", {})
        seen["seed_view"] = core.wait_for_state(seed, {"failed"})
        seen["seed_steps"] = core.steps_run(seed)
        steps_before = core.steps_run(ids["failed"])
        seen["resume"] = core.http.post(f"/api/v1/executions/{ids['failed']}/resume")
        time.sleep(QUIET_PERIOD)
        seen["steps_before"] = steps_before
        seen["steps_after"] = core.steps_run(ids["failed"])
        seen["failed_after_resume"] = core.execution(ids["failed"])
        seen["grpc_resume_again"] = _rpc(
            self.stub.ResumeExecution, pb.ResumeExecutionRequest(execution_id=ids["failed"])
        )
        return seen


@pytest.fixture(scope="module")
def scenario(real_core: RealCore) -> Iterator[Scenario]:
    with grpc.insecure_channel(real_core.grpc_target) as channel:
        yield Scenario(real_core, pb_grpc.WorkerServiceStub(channel))


# ---- the rows ------------------------------------------------------------------------------------


def release_is_pinned(s: Scenario) -> None:
    assert s.core.release == RELEASE, f"this table pins release {RELEASE}, the machine has {s.core.release}"


def grpc_execute_known(s: Scenario) -> None:
    first = s.stub.ExecuteWorkflow(pb.ExecuteRequest(workflow_module="rc_ok"), timeout=10)
    asked_for = pb.ExecuteRequest(
        workflow_module="rc_ok", options=pb.ExecutionOptions(execution_id="chosen-by-caller")
    )
    second = s.stub.ExecuteWorkflow(asked_for, timeout=10)
    assert first.status == second.status == "running"
    assert UUID.fullmatch(first.execution_id) and UUID.fullmatch(second.execution_id)
    assert first.execution_id != second.execution_id
    assert second.execution_id != "chosen-by-caller"  # options.execution_id is ignored
    assert first.started_at.seconds > 0
    s.core.wait_for_state(second.execution_id, {"completed"})


def grpc_execute_unknown(s: Scenario) -> None:
    handle = s.stub.ExecuteWorkflow(pb.ExecuteRequest(workflow_module="rc_never_submitted"), timeout=10)
    assert handle.status == "failed"
    assert re.fullmatch(r"error_\d+", handle.execution_id), handle.execution_id
    assert s.core.http.get(f"/api/v1/executions/{handle.execution_id}").status_code == 404


def grpc_status_unknown_id(s: Scenario) -> None:
    status = s.stub.GetExecutionStatus(pb.GetExecutionStatusRequest(execution_id=UNKNOWN_ID), timeout=10)
    assert status.status == pb.EXECUTION_STATE_UNSPECIFIED
    assert status.workflow_name == "unknown"
    assert (status.error.kind, status.error.message) == ("not_found", f"Execution {UNKNOWN_ID} not found")


def grpc_status_completed(s: Scenario) -> None:
    request = pb.GetExecutionStatusRequest(execution_id=s.settled["completed"])
    _assert_internal_error(_rpc(s.stub.GetExecutionStatus, request))


def grpc_status_failed(s: Scenario) -> None:
    request = pb.GetExecutionStatusRequest(execution_id=s.settled["failed"])
    _assert_internal_error(_rpc(s.stub.GetExecutionStatus, request))


def grpc_status_waiting(s: Scenario) -> None:
    request = pb.GetExecutionStatusRequest(execution_id=s.settled["waiting"])
    _assert_internal_error(_rpc(s.stub.GetExecutionStatus, request))


def grpc_list_empty_name(s: Scenario) -> None:
    assert _list(s)["total"] >= len(s.settled)  # there are executions to list
    page = s.stub.ListExecutions(pb.ListExecutionsRequest(workflow_name=""), timeout=10)
    assert (page.total_count, len(page.executions), page.has_more) == (0, 0, False)


def grpc_list_no_match(s: Scenario) -> None:
    page = s.stub.ListExecutions(pb.ListExecutionsRequest(workflow_name="rc_never_submitted"), timeout=10)
    assert (page.total_count, len(page.executions), page.has_more) == (0, 0, False)


def grpc_list_unfiltered(s: Scenario) -> None:
    assert _list(s)["total"] >= len(s.settled)
    _assert_internal_error(_rpc(s.stub.ListExecutions, pb.ListExecutionsRequest()))


def grpc_list_by_workflow(s: Scenario) -> None:
    assert _list(s, workflow="rc_ok")["total"] >= 2
    _assert_internal_error(_rpc(s.stub.ListExecutions, pb.ListExecutionsRequest(workflow_name="rc_ok")))


def grpc_resume_failed(s: Scenario) -> None:
    failed = s.settled["failed"]
    before = s.core.steps_run(failed)
    handle = s.stub.ResumeExecution(pb.ResumeExecutionRequest(execution_id=failed), timeout=10)
    assert (handle.execution_id, handle.status) == (failed, "already_running")
    time.sleep(QUIET_PERIOD)
    assert s.core.steps_run(failed) == before == ["ok_a", "boom"]
    assert s.core.execution(failed)["state"] == "failed"


def grpc_resume_completed(s: Scenario) -> None:
    completed = s.settled["completed"]
    handle = s.stub.ResumeExecution(pb.ResumeExecutionRequest(execution_id=completed), timeout=10)
    assert (handle.execution_id, handle.status) == (completed, "already_running")


def grpc_resume_unknown(s: Scenario) -> None:
    handle = s.stub.ResumeExecution(pb.ResumeExecutionRequest(execution_id=UNKNOWN_ID), timeout=10)
    assert handle.status == "failed_to_resume"


def rest_start(s: Scenario) -> None:
    answer = s.core.http.post("/api/v1/executions", json={"workflow": "rc_ok", "input": {"order": 1}})
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"data"} and set(body["data"]) == {"id", "status", "workflow"}
    assert (body["data"]["status"], body["data"]["workflow"]) == ("started", "rc_ok")
    assert UUID.fullmatch(body["data"]["id"])
    s.core.wait_for_state(body["data"]["id"], {"completed"})


def rest_start_unknown(s: Scenario) -> None:
    answer = s.core.http.post("/api/v1/executions", json={"workflow": "rc_never_submitted", "input": {}})
    assert answer.status_code == 404
    assert answer.json() == {
        "error": "workflow_not_found", "message": "Workflow 'rc_never_submitted' not registered"
    }


def rest_get_unknown(s: Scenario) -> None:
    answer = s.core.http.get(f"/api/v1/executions/{UNKNOWN_ID}")
    assert answer.status_code == 404
    assert answer.json() == {"error": "not_found", "message": f"Execution {UNKNOWN_ID} not found"}


VIEW_KEYS = {"execution_id", "state", "progress", "current_step", "current_step_data", "results", "error"}


def rest_get_completed(s: Scenario) -> None:
    answer = s.core.http.get(f"/api/v1/executions/{s.settled['completed']}")
    assert answer.status_code == 200
    view = answer.json()
    assert set(view) == VIEW_KEYS
    assert (view["state"], view["progress"], view["error"]) == ("completed", "3/3", None)
    # the engine has no current step once finished: both fields come from the event log (the last
    # step), where booleans are strings
    assert (view["current_step"], view["current_step_data"]) == ("ok_c", {"c_done": "true", "n": 3.0})
    # the engine still holds the results: booleans stay booleans, whole numbers come back as floats
    assert view["results"] == {
        "ok_a": {"a_done": True, "n": 1.0}, "ok_b": {"b_done": True, "n": 2.0},
        "ok_c": {"c_done": True, "n": 3.0},
    }
    assert '"n":1.0' in answer.text


def rest_get_failed(s: Scenario) -> None:
    view = s.core.execution(s.settled["failed"])
    assert set(view) == VIEW_KEYS
    assert (view["state"], view["progress"], view["current_step"]) == ("failed", "1/2", "boom")
    assert view["error"] == BOOM_ERROR
    assert view["results"] == {"ok_a": {"a_done": True, "n": 1.0}}


def rest_get_waiting(s: Scenario) -> None:
    view = s.core.execution(s.settled["waiting"])
    assert set(view) == VIEW_KEYS
    assert (view["state"], view["progress"], view["current_step"], view["error"]) == (
        "waiting_for_approval", "1/3", "ask", None
    )
    assert view["results"]["ask"] == {
        "status": "waiting_for_approval",
        "data": {"type": "manual", "data": {"amount": 5.0}, "timeout_ms": 600000},
    }


SUMMARY_KEYS = {
    "execution_id", "id", "workflow", "status", "current_step", "current_step_data", "events_count"
}


def _list(s: Scenario, **params: Any) -> dict[str, Any]:
    answer = s.core.http.get("/api/v1/executions", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def rest_list_shape(s: Scenario) -> None:
    ids = s.settled
    page = _list(s)
    assert set(page) == {"executions", "total"}
    assert page["total"] >= len(ids)
    for summary in page["executions"]:
        assert set(summary) == SUMMARY_KEYS
        assert summary["execution_id"] == summary["id"]
    by_id = {summary["id"]: summary for summary in _list(s, workflow="rc_ok", limit=100)["executions"]}
    completed = by_id[ids["completed"]]
    assert (completed["workflow"], completed["status"], completed["current_step"]) == (
        "rc_ok", "completed", "ok_c"
    )
    assert completed["events_count"] == 5  # started, three steps, completed


def rest_list_workflow_filter(s: Scenario) -> None:
    listed = s.listed
    page = _list(s, workflow="rc_list")
    assert page["total"] == 3
    assert sorted(summary["id"] for summary in page["executions"]) == sorted(listed)
    assert {summary["workflow"] for summary in page["executions"]} == {"rc_list"}


def rest_list_order(s: Scenario) -> None:
    started_in_order = s.listed
    listed = [summary["id"] for summary in _list(s, workflow="rc_list")["executions"]]
    assert listed == sorted(started_in_order)  # the ids' text order, not the order they started in
    everything = [summary["id"] for summary in _list(s, limit=100)["executions"]]
    assert everything == sorted(everything)


def rest_list_paging(s: Scenario) -> None:
    expected = sorted(s.listed)
    first = _list(s, workflow="rc_list", limit=2, offset=0)
    second = _list(s, workflow="rc_list", limit=2, offset=2)
    assert (first["total"], second["total"]) == (3, 3)
    assert [len(first["executions"]), len(second["executions"])] == [2, 1]
    pages = [summary["id"] for summary in first["executions"] + second["executions"]]
    assert pages == expected
    assert _list(s, workflow="rc_list", offset=3) == {"executions": [], "total": 3}


def rest_list_status_filter(s: Scenario) -> None:
    failed = _list(s, workflow="rc_fail", status="failed", limit=100)
    assert s.settled["failed"] in {summary["id"] for summary in failed["executions"]}
    assert {summary["status"] for summary in failed["executions"]} == {"failed"}
    completed = _list(s, workflow="rc_ok", status="completed", limit=100)
    assert s.settled["completed"] in {summary["id"] for summary in completed["executions"]}
    assert {summary["status"] for summary in completed["executions"]} == {"completed"}
    assert _list(s, workflow="rc_list", status="failed") == {"executions": [], "total": 0}


def rest_list_waiting_as_running(s: Scenario) -> None:
    waiting = s.settled["waiting"]
    summary = {item["id"]: item for item in _list(s, workflow="rc_ask", limit=100)["executions"]}[waiting]
    assert (summary["status"], summary["current_step"]) == ("running", "ask")
    assert summary["current_step_data"] == {"type": "manual", "amount": 5.0, "timeout_ms": 600000}
    # yet the status filter reads the latest event: "running" leaves it out, its own word finds it
    running = _list(s, workflow="rc_ask", status="running", limit=100)["executions"]
    assert waiting not in {item["id"] for item in running}
    approval = _list(s, workflow="rc_ask", status="waiting_for_approval", limit=100)["executions"]
    assert waiting in {item["id"] for item in approval}


def rest_list_unknown_status(s: Scenario) -> None:
    assert _list(s)["total"] >= len(s.settled)
    assert _list(s, status="no_such_status") == {"executions": [], "total": 0}


def rest_events(s: Scenario) -> None:
    completed = s.settled["completed"]
    answer = s.core.http.get(f"/api/v1/executions/{completed}/events")
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"execution_id", "count", "events"}
    assert body["execution_id"] == completed and body["count"] == len(body["events"]) == 5
    assert [event["type"] for event in body["events"]] == [
        "ExecutionStartedEvent", "StepExecutedEvent", "StepExecutedEvent", "StepExecutedEvent",
        "ExecutionCompletedEvent",
    ]
    assert [event["version"] for event in body["events"]] == [0, 1, 2, 3, 4]
    for event in body["events"]:
        assert set(event) == {"version", "type", "data", "timestamp"}
    started = body["events"][0]["data"]
    assert (started["blueprint_name"], started["tags"], started["correlation_id"]) == ("rc_ok", [], None)
    # the event log keeps booleans as strings and whole numbers as they came
    assert started["inputs"] == {"order": 7, "flag": "true"}
    assert body["events"][1]["data"]["result"] == {"a_done": "true", "n": 1.0}
    # each StepExecutedEvent names its step and index: the execution page numbers the steps by them
    steps = [(step.step_index, step.step_name, step.status) for step in completed_steps_from_events(body["events"])]
    assert steps == [(0, "ok_a", "completed"), (1, "ok_b", "completed"), (2, "ok_c", "completed")], steps


def rest_events_unknown(s: Scenario) -> None:
    answer = s.core.http.get(f"/api/v1/executions/{UNKNOWN_ID}/events")
    assert answer.status_code == 200
    assert answer.json() == {"execution_id": UNKNOWN_ID, "count": 0, "events": []}


def rest_resume_failed(s: Scenario) -> None:
    failed = s.settled["failed"]
    before = s.core.steps_run(failed)
    answer = s.core.http.post(f"/api/v1/executions/{failed}/resume")
    assert (answer.status_code, answer.json()) == (422, {"error": ":already_running"})
    time.sleep(QUIET_PERIOD)
    assert s.core.steps_run(failed) == before == ["ok_a", "boom"]
    assert s.core.execution(failed)["state"] == "failed"


def rest_resume_unknown(s: Scenario) -> None:
    answer = s.core.http.post(f"/api/v1/executions/{UNKNOWN_ID}/resume")
    assert (answer.status_code, answer.json()) == (422, {"error": ":not_found"})


def rest_approve(s: Scenario) -> None:
    execution_id = s.core.start_execution("rc_ask", {})
    s.core.wait_for_state(execution_id, {"waiting_for_approval"})
    response = {"approved": True, "by": "conformance"}
    answer = s.core.http.post(f"/api/v1/executions/{execution_id}/approve", json=response)
    assert (answer.status_code, answer.json()) == (200, {"execution_id": execution_id, "status": "approved"})
    view = s.core.wait_for_state(execution_id, {"completed"})
    # Core runs the asking step again with the approval response as its inputs, then goes on
    assert s.core.steps_run(execution_id) == ["ok_a", "ask", "ask", "ok_c"]
    assert view["results"]["ask"] == {"approved_with": response}


def rest_approve_failed(s: Scenario) -> None:
    answer = s.core.http.post(f"/api/v1/executions/{s.settled['failed']}/approve", json={"ok": True})
    assert (answer.status_code, answer.json()) == (422, {"error": json.dumps(BOOM_ERROR)})


def rest_approve_unknown(s: Scenario) -> None:
    answer = s.core.http.post(f"/api/v1/executions/{UNKNOWN_ID}/approve", json={"ok": True})
    assert (answer.status_code, answer.json()) == (422, {"error": ":not_found"})


def rest_approve_completed(s: Scenario) -> None:
    s.core.add_blueprint("rc_ghost", ["ok_b"])
    original = s.core.start_execution("rc_ghost", {})
    s.core.wait_for_state(original, {"completed"})
    _assert_handler_crashed(
        _post_on_own_connection(s.core, f"/api/v1/executions/{original}/approve", json={"ok": True})
    )
    # the crash restarts the engine under a new id, which runs the whole workflow again
    deadline = time.monotonic() + 10
    while (page := _list(s, workflow="rc_ghost"))["total"] < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    ghosts = [summary["id"] for summary in page["executions"] if summary["id"] != original]
    assert page["total"] == 2 and len(ghosts) == 1, page
    s.core.wait_for_state(ghosts[0], {"completed"})
    assert s.core.steps_run(ghosts[0]) == ["ok_b"]
    assert s.core.steps_run(original) == ["ok_b"]


def rest_stop(s: Scenario) -> None:
    stopped = s.stopped
    assert stopped["answer"].status_code == 200
    assert stopped["answer"].json() == {"execution_id": stopped["id"], "status": "stopped"}
    # no event records the stop: the waiting execution now reads as running, and stays so
    assert stopped["view"]["state"] == "running"
    assert s.core.execution(stopped["id"])["state"] == "running"
    assert s.core.steps_run(stopped["id"]) == ["ok_a", "ask"]


def rest_stop_then_approve(s: Scenario) -> None:
    answer = s.core.http.post(f"/api/v1/executions/{s.stopped['id']}/approve", json={"ok": True})
    assert (answer.status_code, answer.json()) == (422, {"error": ":not_found"})


def rest_stop_then_resume(s: Scenario) -> None:
    answer = s.core.http.post(f"/api/v1/executions/{s.stopped['id']}/resume")
    assert (answer.status_code, answer.json()) == (422, {"error": ":not_resumable"})


def rest_stop_unknown(s: Scenario) -> None:
    answer = s.core.http.post(f"/api/v1/executions/{UNKNOWN_ID}/stop")
    assert (answer.status_code, answer.json()) == (404, {"error": "not_found"})


def rest_no_token(s: Scenario) -> None:
    for method, path in (("GET", "/api/v1/executions"), ("POST", "/api/v1/executions"),
                         ("GET", f"/api/v1/executions/{UNKNOWN_ID}")):
        answer = httpx.request(method, s.core.http_url + path, json={"workflow": "rc_ok"})
        assert (answer.status_code, answer.json()) == (401, {"error": "unauthorized"}), (method, path)


def rest_bad_token(s: Scenario) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = stranger.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # right kid and claims, wrong key: Core checks the signature
    forged = jwt.encode({"sub": "u1", "user_id": "u1"}, pem, algorithm="RS256", headers={"kid": "k1"})
    for token in ("not-a-jwt", forged):
        answer = httpx.get(
            s.core.http_url + "/api/v1/executions", headers={"Authorization": f"Bearer {token}"}
        )
        assert (answer.status_code, answer.json()) == (401, {"error": "unauthorized"})


def rest_open_endpoints(s: Scenario) -> None:
    health = httpx.get(s.core.http_url + "/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["services"] == {"database": "ok", "grpc": "running"}
    # one entry per step a worker registered, and one (with no steps) per submitted blueprint; the
    # harness keeps the SDK worker's registration alive (see scripts/real_core.py, _HeartbeatKeeper)
    workflows = httpx.get(s.core.http_url + "/api/v1/workflows")
    assert workflows.status_code == 200
    entries = {entry["id"]: entry for entry in workflows.json()["data"]}
    assert entries["py-worker-1/ok_a"] == {
        "id": "py-worker-1/ok_a", "label": "ok_a", "language": "python", "steps": ["ok_a"],
        "version": "0.1.0", "worker_id": "py-worker-1",
    }
    assert entries["rc_ok"] == {
        "id": "rc_ok", "label": "rc_ok", "language": "python", "steps": [], "version": "0.1.0"
    }


def rest_token_reaches_steps(s: Scenario) -> None:
    def first_step_line(execution_id: str) -> str:
        return next(line for line in s.core.worker_log().splitlines()
                    if line.startswith(f"STEP ok_a {execution_id} "))

    # a REST start hands the caller's bearer token to every step, as the input "auth_token"
    rest_line = first_step_line(s.settled["completed"])
    assert f'"auth_token": "{s.core.token[:200]}' in rest_line
    grpc_line = first_step_line(s.settled["grpc_completed"])
    assert "auth_token" not in grpc_line


def restart_get_completed(s: Scenario) -> None:
    answer = s.after_restart["completed_view"]
    assert answer.status_code == 200
    view = answer.json()
    # rebuilt from the event log: no "progress", and booleans come back as strings
    assert set(view) == VIEW_KEYS - {"progress"}
    assert (view["state"], view["error"]) == ("completed", None)
    assert view["results"] == {
        "ok_a": {"a_done": "true", "n": 1.0}, "ok_b": {"b_done": "true", "n": 2.0},
        "ok_c": {"c_done": "true", "n": 3.0},
    }


def restart_get_failed(s: Scenario) -> None:
    view = s.after_restart["failed_view"].json()
    assert view["state"] == "failed"
    # rebuilt from the event log, "error" is the whole error map rather than its text
    assert view["error"] == {
        "kind": "exception", "message": BOOM_ERROR, "step_name": "boom",
        "reason": {"__exception__": "Elixir.RuntimeError", "message": "kaboom from python step"},
    }


def restart_resume_before_steps_known(s: Scenario) -> None:
    _assert_handler_crashed(s.after_restart["resume_before_seed"])


def restart_runs_new_executions(s: Scenario) -> None:
    seen = s.after_restart
    assert seen["seed_steps"] == ["ok_a", "boom"]
    assert seen["seed_view"]["error"] == BOOM_ERROR


def restart_resume_failed(s: Scenario) -> None:
    seen = s.after_restart
    failed = s.settled["failed"]
    assert (seen["resume"].status_code, seen["resume"].json()) == (
        200, {"execution_id": failed, "status": "resumed"}
    )
    # "resumed", yet no step runs again and the execution is still failed
    assert seen["steps_after"] == seen["steps_before"] == ["ok_a", "boom"]
    view = seen["failed_after_resume"]
    assert (view["state"], view["error"], view["progress"]) == ("failed", BOOM_ERROR, "1/0")


def restart_grpc_resume_again(s: Scenario) -> None:
    handle = s.after_restart["grpc_resume_again"]
    assert (handle.execution_id, handle.status) == (s.settled["failed"], "already_running")


@dataclass(frozen=True)
class Row:
    """One point of the contract or the README, and the check that pins it on the real Core."""

    name: str
    point: str
    check: Callable[[Scenario], None]


ROWS = [
    Row("release", "the table is measured on this release", release_is_pinned),
    Row("grpc-execute-known", "ExecuteWorkflow: running and a new id; options.execution_id ignored",
        grpc_execute_known),
    Row("grpc-execute-unknown", "ExecuteWorkflow of an unknown workflow: OK, failed, id error_<n>",
        grpc_execute_unknown),
    Row("grpc-status-unknown-id", "GetExecutionStatus of an unknown id: OK, UNSPECIFIED, not_found",
        grpc_status_unknown_id),
    Row("grpc-status-completed", "GetExecutionStatus of a completed execution: UNKNOWN",
        grpc_status_completed),
    Row("grpc-status-failed", "GetExecutionStatus of a failed execution: UNKNOWN", grpc_status_failed),
    Row("grpc-status-waiting", "GetExecutionStatus of a waiting execution: UNKNOWN", grpc_status_waiting),
    Row("grpc-list-empty-name", 'ListExecutions with workflow_name="" present: OK, total 0',
        grpc_list_empty_name),
    Row("grpc-list-no-match", "ListExecutions matching nothing: OK, empty page", grpc_list_no_match),
    Row("grpc-list-unfiltered", "ListExecutions of a non-empty page: UNKNOWN", grpc_list_unfiltered),
    Row("grpc-list-by-workflow", "ListExecutions of a non-empty filtered page: UNKNOWN",
        grpc_list_by_workflow),
    Row("grpc-resume-failed", "ResumeExecution of a failed execution: already_running, nothing runs",
        grpc_resume_failed),
    Row("grpc-resume-completed", "ResumeExecution of a completed execution: already_running",
        grpc_resume_completed),
    Row("grpc-resume-unknown", "ResumeExecution of an unknown id: failed_to_resume", grpc_resume_unknown),
    Row("rest-start", "POST executions: 201 data {id, status started, workflow}", rest_start),
    Row("rest-start-unknown", "POST executions of an unknown workflow: 404 workflow_not_found",
        rest_start_unknown),
    Row("rest-get-unknown", "GET an unknown execution: 404 not_found", rest_get_unknown),
    Row("rest-get-completed", "GET a completed execution: 200 with state, progress, results",
        rest_get_completed),
    Row("rest-get-failed", "GET a failed execution: 200, state failed, error is the step's text",
        rest_get_failed),
    Row("rest-get-waiting", "GET a waiting execution: 200, state waiting_for_approval", rest_get_waiting),
    Row("rest-list-shape", "GET executions: {executions: [summary], total}", rest_list_shape),
    Row("rest-list-workflow-filter", "GET executions?workflow=: exact match, total counts matches",
        rest_list_workflow_filter),
    Row("rest-list-order", "GET executions: ordered by execution id", rest_list_order),
    Row("rest-list-paging", "GET executions?limit=&offset=: pages, total constant", rest_list_paging),
    Row("rest-list-status-filter", "GET executions?status=: filters by the latest event",
        rest_list_status_filter),
    Row("rest-list-waiting-as-running", "a waiting execution lists as running, but status=running omits it",
        rest_list_waiting_as_running),
    Row("rest-list-unknown-status", "GET executions?status=<other word>: 200, empty",
        rest_list_unknown_status),
    Row("rest-events", "GET events: {execution_id, count, events [{version, type, data, timestamp}]}",
        rest_events),
    Row("rest-events-unknown", "GET events of an unknown id: 200, no events", rest_events_unknown),
    Row("rest-resume-failed", "POST resume of a failed execution: 422 :already_running, nothing runs",
        rest_resume_failed),
    Row("rest-resume-unknown", "POST resume of an unknown id: 422 :not_found", rest_resume_unknown),
    Row("rest-approve", "POST approve: 200 approved, the step runs again with the response, completes",
        rest_approve),
    Row("rest-approve-failed", "POST approve of a failed execution: 422 with the error text",
        rest_approve_failed),
    Row("rest-approve-unknown", "POST approve of an unknown id: 422 :not_found", rest_approve_unknown),
    Row("rest-approve-completed", "POST approve of a completed execution: 500, and a ghost re-run",
        rest_approve_completed),
    Row("rest-stop", "POST stop: 200 stopped, the state stays running", rest_stop),
    Row("rest-stop-then-approve", "POST approve of a stopped execution: 422 :not_found",
        rest_stop_then_approve),
    Row("rest-stop-then-resume", "POST resume of a stopped execution: 422 :not_resumable",
        rest_stop_then_resume),
    Row("rest-stop-unknown", "POST stop of an unknown id: 404 not_found", rest_stop_unknown),
    Row("rest-no-token", "no bearer token: 401 unauthorized", rest_no_token),
    Row("rest-bad-token", "a token not signed by the JWKS key: 401 unauthorized", rest_bad_token),
    Row("rest-open-endpoints", "/health and GET /api/v1/workflows need no token", rest_open_endpoints),
    Row("rest-token-reaches-steps", "a REST start passes the bearer token to the steps as auth_token",
        rest_token_reaches_steps),
    # after this point Core has restarted once
    Row("restart-get-completed", "after a restart: results replayed, booleans as strings",
        restart_get_completed),
    Row("restart-get-failed", "after a restart: a failed execution's error is the error map",
        restart_get_failed),
    Row("restart-resume-before-steps-known", "after a restart: resume before its step names ran: 500",
        restart_resume_before_steps_known),
    Row("restart-runs-new-executions", "after a restart: blueprints re-submitted, the worker runs steps",
        restart_runs_new_executions),
    Row("restart-resume-failed", "after a restart: resume answers resumed, nothing runs, still failed",
        restart_resume_failed),
    Row("restart-grpc-resume-again", "after a resume: ResumeExecution answers already_running",
        restart_grpc_resume_again),
]


@pytest.mark.parametrize("row", [pytest.param(row, id=f"{RELEASE}-{row.name}") for row in ROWS])
def test_real_core_conformance(row: Row, scenario: Scenario) -> None:
    """One row of the table: the real Core (be56c90) still does what ``row.point`` says."""
    row.check(scenario)
