"""Both clients over REST against a scripted HTTP server (tests/client/scripted_rest.py).

For what the emulator cannot answer: bodies that are not JSON, a gateway's 500/502, progress and
state words Core never sends, its replay path's error map, huge and extended answers, a connection
dropped after the request arrived; and what exactly the client sends (path quoting, query, headers,
bodies, a gateway's path prefix).
"""

from __future__ import annotations

import email.utils
import logging
import time

import pytest

from cerebelum_provider.client import RetryConfig, _retry, calls_end_within
from cerebelum_provider.client._http_transport import retry_after_seconds
from cerebelum_provider.client._operations import MAX_IDLE_PASSES
from cerebelum_provider.exceptions import (
    CerebelumAuthError,
    CerebelumRPCError,
    CoreAPIMismatchError,
    CoreBusyError,
    CoreInternalError,
    CoreUnavailableError,
    ErrorCode,
    ExecutionNotFoundError,
    RequestRefusedError,
    WorkflowStartError,
)
from cerebelum_provider.models import ExecutionState
from tests.client.conftest import FAST_RETRY
from tests.client.scripted_rest import (
    LIST_ROUTE,
    RATE_LIMITED,
    START_ROUTE,
    Delay,
    Drop,
    Reply,
    ScriptedRest,
    Trickle,
    status_body,
    status_route,
    summary_body,
)


@pytest.fixture
def rest():
    with ScriptedRest() as server:
        yield server


async def status_with(rest, make_client, **fields):
    rest.default(status_route("exec-1"), Reply(200, status_body("exec-1", **fields)))
    return await make_client(rest.url).get_execution_status("exec-1")


# -- bodies that are not what Core sends ------------------------------------------------------


@pytest.mark.parametrize(
    "body", [b"<html><body>Welcome to nginx</body></html>", b"{not json", b"\xff\xfe\x00garbage"]
)
async def test_ok_answer_that_is_not_json_is_an_rpc_error_naming_the_status(rest, make_client, body):
    rest.default(status_route("exec-1"), Reply(200, body))
    with pytest.raises(CerebelumRPCError) as caught:
        await make_client(rest.url).get_execution_status("exec-1")
    assert type(caught.value) is CerebelumRPCError
    message = str(caught.value)
    assert "HTTP 200" in message and "not JSON" in message and rest.url in message
    assert (caught.value.code, caught.value.transport_code) == (ErrorCode.UNKNOWN, 200)
    assert caught.value.execution_id == "exec-1"
    assert rest.count() == 1  # the same page answers the same again: not retried


async def test_not_found_page_that_is_not_json_is_no_missing_execution(rest, make_client):
    # A gateway's HTML 404 (a wrong path prefix) says nothing about the execution.
    rest.default(status_route("exec-1"), Reply(404, b"<h1>404 Not Found</h1>"))
    with pytest.raises(CerebelumRPCError, match="HTTP 404") as caught:
        await make_client(rest.url).get_execution_status("exec-1")
    assert not isinstance(caught.value, ExecutionNotFoundError)


@pytest.mark.parametrize(
    "body",
    [{"errors": {"detail": "Not Found"}}, {"message": "no Route matched with those values"}, None, []],
    ids=["phoenix", "kong", "empty", "list"],
)
@pytest.mark.parametrize(
    ("route", "call"),
    [
        (status_route("exec-1"), ("get_execution_status", "exec-1")),
        ("POST /api/v1/executions/exec-1/resume", ("resume_execution", "exec-1")),
        (START_ROUTE, ("execute_workflow", "orders")),
        ("POST /api/v1/executions/exec-1/stop", ("stop_execution", "exec-1")),
        ("GET /api/v1/executions/exec-1/events", ("get_execution_events", "exec-1")),
        (LIST_ROUTE, ("list_executions",)),
    ],
    ids=["status", "resume", "start", "stop", "events", "list"],
)
async def test_not_found_without_cores_error_word_is_a_wrong_route(rest, make_client, route, call, body):
    # Core's own 404s say what is missing ({"error": "not_found"}, "workflow_not_found"); any other
    # 404 means the address leads somewhere Core's routes are not.
    # An empty 404 is what the real Core's gRPC port answers HTTP/1.1 (release be56c90): the error
    # then names the connection's api too.
    rest.default(route, Reply(404, body))
    method, *args = call
    with pytest.raises(CerebelumRPCError) as caught:
        await getattr(make_client(rest.url), method)(*args)
    if body is None:
        assert type(caught.value) is CoreAPIMismatchError and "api=grpc" in str(caught.value)
    else:
        assert type(caught.value) is CerebelumRPCError and "no route" in str(caught.value)
    assert (caught.value.code, caught.value.transport_code) == (ErrorCode.NOT_FOUND, 404)
    assert "core_url" in str(caught.value) and rest.count() == 1


async def test_internal_error_is_core_internal_error_and_not_retried(rest, make_client):
    rest.default("*", Reply(500, {"errors": {"detail": "Internal Server Error"}}))
    client = make_client(rest.url)
    with pytest.raises(CoreInternalError) as caught:
        await client.list_executions()
    assert (
        (caught.value.code, caught.value.transport_code) == (ErrorCode.INTERNAL, 500)
        and "HTTP 500" in str(caught.value)
        and "Internal Server Error" in str(caught.value)
    )
    with pytest.raises(CoreInternalError):
        await client.resume_execution("exec-1")
    # A status read's 500 that is not Phoenix's bare body is a crash too, not a busy engine.
    rest.default(status_route("exec-1"), Reply(500, {"errors": {"detail": "boom"}}))
    with pytest.raises(CoreInternalError):
        await client.get_execution_status("exec-1")
    assert [r.route for r in rest.received()] == [
        LIST_ROUTE,
        "POST /api/v1/executions/exec-1/resume",
        status_route("exec-1"),
    ]


async def test_busy_engine_500_to_a_status_read_is_retried_then_core_busy(rest, make_client):
    # What Core release be56c90 answers a status read while one of its engines is busy past 5 s.
    busy = Reply(500, {"errors": {"detail": "Internal Server Error"}})
    rest.queue(status_route("exec-1"), busy, busy)
    rest.default(status_route("exec-1"), Reply(200, status_body("exec-1")))
    client = make_client(rest.url)
    assert (await client.get_execution_status("exec-1")).execution_id == "exec-1"
    assert rest.count() == 3

    rest.default(status_route("exec-2"), busy)
    with pytest.raises(CoreBusyError) as caught:
        await client.poll_execution("exec-2")
    assert isinstance(caught.value, CoreUnavailableError) and not isinstance(caught.value, CoreInternalError)
    assert (caught.value.code, caught.value.transport_code) == (ErrorCode.UNAVAILABLE, 500)
    message = str(caught.value)
    assert "Internal Server Error" in message and "busy" in message and "after 3 attempts" in message
    assert rest.count(status_route("exec-2")) == FAST_RETRY.max_attempts


@pytest.mark.parametrize(
    ("status", "code"),
    [(501, ErrorCode.UNIMPLEMENTED), (505, ErrorCode.INTERNAL), (520, ErrorCode.INTERNAL)],
)
async def test_other_server_errors_are_core_internal_errors(rest, make_client, status, code):
    rest.default("*", Reply(status, b"upstream says no"))
    with pytest.raises(CoreInternalError) as caught:
        await make_client(rest.url).list_executions()
    assert (caught.value.code, caught.value.transport_code) == (code, status) and rest.count() == 1


async def test_bad_gateway_is_retried_like_unavailable(rest, make_client):
    rest.queue(status_route("exec-1"), Reply(502, b"bad gateway"), Reply(502, b"bad gateway"))
    rest.default(status_route("exec-1"), Reply(200, status_body("exec-1")))
    assert (await make_client(rest.url).get_execution_status("exec-1")).execution_id == "exec-1"
    assert rest.count() == 3


# -- Core's rate limit: 429 until the calendar minute turns ---------------------------------------


@pytest.fixture
def window_waits(monkeypatch):
    """Record each wait for Core's next rate-limit window as ``(now, retry_after)`` and make it 0 s."""
    waits: list[tuple[float, float | None]] = []

    def no_wait(now: float, retry_after: float | None) -> float:
        waits.append((now, retry_after))
        return 0.0

    monkeypatch.setattr(_retry, "until_next_rate_limit_window", no_wait)
    return waits


async def test_rate_limit_past_the_retries_waits_for_the_next_window(rest, make_client, window_waits, caplog):
    caplog.set_level(logging.WARNING, logger="cerebelum_provider.client")
    rest.queue(status_route("exec-1"), *[RATE_LIMITED] * 4)  # one more than the retry budget (3)
    rest.default(status_route("exec-1"), Reply(200, status_body("exec-1")))
    assert (await make_client(rest.url).get_execution_status("exec-1")).execution_id == "exec-1"
    assert rest.count() == 5
    assert [retry_after for _, retry_after in window_waits] == [60.0]
    notices = [record.getMessage() for record in caplog.records if "rate-limiting" in record.getMessage()]
    assert len(notices) == 1
    assert "HTTP 429 rate_limit_exceeded (limit 1000)" in notices[0] and "tries again at" in notices[0]
    assert rest.url.removeprefix("http://") in notices[0] and "exec-1" in notices[0]


async def test_rate_limit_window_after_the_callers_deadline_is_not_waited_for(
    rest, make_client, caplog, monkeypatch
):
    # Core's next window opens in 45 s; the caller must be done in 30.
    monkeypatch.setattr(_retry, "until_next_rate_limit_window", lambda now, retry_after: 45.0)
    caplog.set_level(logging.WARNING, logger="cerebelum_provider.client")
    rest.default(status_route("exec-1"), RATE_LIMITED)
    client = make_client(rest.url)
    with calls_end_within(30), pytest.raises(CoreUnavailableError) as caught:
        await client.get_execution_status("exec-1")
    assert rest.count() == FAST_RETRY.max_attempts  # the retries, and no attempt after a window
    assert "next rate-limit window opens after the caller's deadline" in str(caught.value)
    assert not [record for record in caplog.records if "rate-limiting" in record.getMessage()]


async def test_callers_deadline_cuts_the_retry_and_stops_the_retries(rest, make_client):
    # Each answer would take 30 s; each attempt may take 0.3 s; the caller has 0.5 s: the first
    # attempt times out, the retry is cut at the deadline, and no third attempt is made.
    rest.default(status_route("exec-1"), Delay(30, Reply(200, status_body("exec-1"))))
    client = make_client(rest.url, timeout=0.3)
    with calls_end_within(0.5), pytest.raises(CoreUnavailableError) as caught:
        await client.get_execution_status("exec-1")
    assert caught.value.code is ErrorCode.DEADLINE_EXCEEDED
    assert "after 2 attempts" in str(caught.value) and "the caller's deadline ended the call" in str(
        caught.value
    )
    assert rest.count() == 2


async def test_a_retry_the_deadline_stops_leaves_the_failure_before_it(rest, make_client):
    # The backoff (1 s and more) is cut at the caller's deadline, and the retry after it is never
    # sent: the call fails with what the one attempt got, a busy engine, not with "not retried".
    rest.default(status_route("exec-1"), Reply(500, {"errors": {"detail": "Internal Server Error"}}))
    client = make_client(rest.url, retry=RetryConfig(max_attempts=5, initial_backoff=1.0, max_backoff=2.0))
    with calls_end_within(0.2), pytest.raises(CoreBusyError) as caught:
        await client.get_execution_status("exec-1")
    message = str(caught.value)
    assert "after 1 attempt:" in message and "busy past 5 s" in message, message
    assert message.endswith("; the caller's deadline ended the call"), message
    assert caught.value.transport_code == 500
    assert rest.count() == 1


async def test_past_the_callers_deadline_a_call_is_sent_once_and_not_retried(rest, make_client):
    # A wait checks once more at its deadline, for the execution's last state: that check goes out.
    rest.queue(status_route("exec-1"), Reply(503, {"error": "unavailable"}))
    rest.default(status_route("exec-1"), Reply(200, status_body("exec-1")))
    client = make_client(rest.url)
    with calls_end_within(-1), pytest.raises(CoreUnavailableError) as caught:
        await client.get_execution_status("exec-1")
    assert "after 1 attempt:" in str(caught.value) and "the caller's deadline ended the call" in str(
        caught.value
    )
    assert rest.count() == 1
    with calls_end_within(-1):
        assert (await client.get_execution_status("exec-1")).execution_id == "exec-1"
    # Outside the block the client retries again.
    rest.queue(status_route("exec-1"), Reply(503, {"error": "unavailable"}))
    assert (await client.get_execution_status("exec-1")).execution_id == "exec-1"
    assert rest.count() == 4


@pytest.mark.parametrize("seconds", [float("nan"), "soon", True])
def test_callers_deadline_must_be_a_number_of_seconds(seconds):
    with pytest.raises(ValueError, match="seconds must be a finite number"), calls_end_within(seconds):
        pass


async def test_rate_limit_that_outlasts_every_window_is_core_unavailable_naming_the_429(
    rest, make_client, window_waits
):
    rest.default(LIST_ROUTE, RATE_LIMITED)
    with pytest.raises(CoreUnavailableError) as caught:
        await make_client(rest.url).list_executions()
    windows = _retry.RATE_LIMIT_WINDOWS
    assert len(window_waits) == windows
    # The retry budget (3 attempts) once, then again after each window.
    assert rest.count() == 3 * (1 + windows)
    message = str(caught.value)
    assert (caught.value.code, caught.value.transport_code) == (ErrorCode.RESOURCE_EXHAUSTED, 429)
    assert "HTTP 429 rate_limit_exceeded (limit 1000)" in message
    assert f"after {3 * (1 + windows)} attempts" in message
    assert f"still rate-limited after waiting for {windows} new rate-limit windows" in message


async def test_rate_limited_start_is_sent_again_after_the_window(rest, make_client, window_waits):
    # Core's limiter refuses a request before any controller runs: nothing was started, so even a
    # start (one attempt per window: it is not idempotent) is safe to send again.
    rest.queue(START_ROUTE, RATE_LIMITED)
    rest.default(START_ROUTE, Reply(201, {"data": {"id": "e9", "status": "started"}}))
    handle = await make_client(rest.url).execute_workflow("orders")
    assert handle.execution_id == "e9"
    assert rest.count(START_ROUTE) == 2 and len(window_waits) == 1


async def test_rate_limit_with_retries_off_waits_for_no_window(rest, make_client, window_waits):
    rest.default(LIST_ROUTE, RATE_LIMITED)
    with pytest.raises(CoreUnavailableError, match="after 1 attempt: HTTP 429"):
        await make_client(rest.url, retry=RetryConfig(max_attempts=1)).list_executions()
    assert rest.count() == 1 and window_waits == []


async def test_other_transient_answers_wait_for_no_window(rest, make_client, window_waits):
    rest.default(LIST_ROUTE, Reply(503, {"error": "unavailable"}))
    with pytest.raises(CoreUnavailableError, match="after 3 attempts: HTTP 503") as caught:
        await make_client(rest.url).list_executions()
    assert (caught.value.code, caught.value.transport_code) == (ErrorCode.UNAVAILABLE, 503)
    assert rest.count() == 3 and window_waits == []


async def test_rate_limit_wait_on_a_tiny_window(rest, make_client, monkeypatch):
    """The real wait, with Core's minute shrunk to 50 ms and the jitter to at most 10 ms."""
    monkeypatch.setattr(_retry, "RATE_LIMIT_WINDOW_SECONDS", 0.05)
    monkeypatch.setattr(_retry, "RATE_LIMIT_JITTER", (0.0, 0.01))
    rest.queue(status_route("exec-1"), *[RATE_LIMITED] * 5)
    rest.default(status_route("exec-1"), Reply(200, status_body("exec-1")))
    assert (await make_client(rest.url).get_execution_status("exec-1")).execution_id == "exec-1"
    assert rest.count() == 6


@pytest.mark.parametrize(
    ("now", "retry_after", "low", "high"),
    [
        (7_200.0 + 15.0, None, 45.5, 48.0),  # 15 s into a minute: 45 s to its end, plus jitter
        (7_200.0 + 15.0, 60.0, 45.5, 48.0),  # Core's retry-after (60) is longer than that
        (7_200.0 + 15.0, 10.0, 10.5, 13.0),  # a shorter retry-after is the longest wait
        (7_200.0 + 59.9, 60.0, 0.6, 3.1),  # just before the minute turns
    ],
)
def test_wait_for_the_next_rate_limit_window(now, retry_after, low, high):
    for _ in range(50):
        assert low <= _retry.until_next_rate_limit_window(now, retry_after) <= high


def test_retry_after_forms():
    assert retry_after_seconds("60") == 60.0
    assert retry_after_seconds("-5") == 0.0
    assert retry_after_seconds(None) is None
    for unreadable in ("soon", "", "nan", "inf"):
        assert retry_after_seconds(unreadable) is None, unreadable
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 50.0 <= retry_after_seconds(in_a_minute) <= 60.0


async def test_auth_refusal_with_an_html_body_is_still_an_auth_error(rest, make_client):
    rest.default("*", Reply(403, b"<html>Forbidden by policy</html>"))
    with pytest.raises(CerebelumAuthError) as caught:
        await make_client(rest.url, token="tok-123").list_executions()
    assert (caught.value.code, caught.value.transport_code) == (ErrorCode.PERMISSION_DENIED, 403)
    assert "tok-123" not in str(caught.value) and rest.count() == 1


async def test_empty_ok_body_on_a_status(rest, make_client):
    rest.default(status_route("exec-1"), Reply(200, None))
    status = await make_client(rest.url).get_execution_status("exec-1")
    assert status.execution_id == "exec-1" and status.status is ExecutionState.UNSPECIFIED


# -- fields Core never sends ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("progress", "index", "total", "percentage"),
    [
        ("3/4", 3, 4, 75.0),
        (" 2 / 8 ", 2, 8, 25.0),
        ("0/0", 0, 0, 0.0),
        ("4/0", 4, 0, 0.0),  # no steps reported: 0 %, as the model defines it
        ("abc", 0, 0, 0.0),
        ("1/2/3", 0, 0, 0.0),
        ("-1/4", 0, 0, 0.0),
        ("1.5/4", 0, 0, 0.0),
        ("", 0, 0, 0.0),
        (3, 0, 0, 0.0),
        (None, 0, 0, 0.0),
        ({"k": 1, "n": 4}, 0, 0, 0.0),
    ],
)
async def test_progress_forms(rest, make_client, progress, index, total, percentage):
    status = await status_with(rest, make_client, progress=progress)
    assert (status.current_step_index, status.total_steps, status.progress_percentage) == (
        index,
        total,
        percentage,
    )
    assert status.status is ExecutionState.RUNNING


async def test_progress_missing(rest, make_client):
    body = status_body("exec-1")
    del body["progress"]
    rest.default(status_route("exec-1"), Reply(200, body))
    status = await make_client(rest.url).get_execution_status("exec-1")
    assert (status.current_step_index, status.total_steps, status.progress_percentage) == (0, 0, 0.0)
    assert status.current_step_name == "charge"


async def test_progress_past_the_end_follows_the_models_formula(rest, make_client):
    # Core never sends k > n; if it did, REST reports it as gRPC's conversion does (index/total).
    status = await status_with(rest, make_client, progress="5/4")
    assert (status.current_step_index, status.total_steps, status.progress_percentage) == (5, 4, 125.0)


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("running", ExecutionState.RUNNING),
        ("executing_step", ExecutionState.RUNNING),
        ("initializing", ExecutionState.RUNNING),
        ("completed", ExecutionState.COMPLETED),
        ("failed", ExecutionState.FAILED),
        ("sleeping", ExecutionState.SLEEPING),
        ("waiting_for_approval", ExecutionState.WAITING_FOR_APPROVAL),
        ("paused", ExecutionState.PAUSED),
        (" Completed ", ExecutionState.COMPLETED),
        ("exploded", ExecutionState.UNSPECIFIED),
        ("", ExecutionState.UNSPECIFIED),
        (None, ExecutionState.UNSPECIFIED),
        (7, ExecutionState.UNSPECIFIED),
    ],
)
async def test_state_words(rest, make_client, word, state):
    assert (await status_with(rest, make_client, state=word)).status is state


@pytest.mark.parametrize("word", ["exploded", None, 3])
async def test_unknown_state_with_an_error_is_failed(rest, make_client, word):
    status = await status_with(rest, make_client, state=word, error="Timeout in step :charge - 30s")
    assert status.status is ExecutionState.FAILED
    assert status.error == {"kind": "timeout", "message": "Timeout in step :charge - 30s", "stacktrace": ""}


async def test_known_state_wins_over_an_error(rest, make_client):
    # Core derives the word itself; a word it sent is not second-guessed.
    status = await status_with(rest, make_client, state="completed", error="left over")
    assert status.status is ExecutionState.COMPLETED and status.error["message"] == "left over"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            {"kind": "timeout", "message": "step charge took 30 s"},
            {"kind": "timeout", "message": "step charge took 30 s"},
        ),
        (
            {"message": "Exit in step :ship - :killed"},
            {"kind": "exit", "message": "Exit in step :ship - :killed"},
        ),
        (
            {"kind": "reconstruction_error"},
            {"kind": "reconstruction_error", "message": "{'kind': 'reconstruction_error'}"},
        ),
        ({"kind": "", "message": "plain words"}, {"kind": "error", "message": "plain words"}),
        (
            "Exception in step :ship - RuntimeError: card declined",
            {"kind": "RuntimeError", "message": "card declined"},
        ),
        (
            "Approval rejected in step :ask",
            {"kind": "approval_rejected", "message": "Approval rejected in step :ask"},
        ),
        ("something else went wrong", {"kind": "error", "message": "something else went wrong"}),
    ],
    ids=[
        "map",
        "map-without-kind",
        "map-without-message",
        "map-empty-kind",
        "exception",
        "approval",
        "plain",
    ],
)
async def test_error_forms(rest, make_client, error, expected):
    status = await status_with(rest, make_client, state="failed", error=error)
    assert status.status is ExecutionState.FAILED
    assert status.error == {**expected, "stacktrace": ""}


async def test_error_null_or_empty_is_no_error(rest, make_client):
    assert (await status_with(rest, make_client, error=None)).error is None
    rest.default(status_route("exec-1"), Reply(200, status_body("exec-1", error="")))
    assert (await make_client(rest.url).get_execution_status("exec-1")).error is None


async def test_huge_results_arrive_whole(rest, make_client):
    results = {f"step_{n:05d}": {"rows": list(range(50)), "text": "x" * 500, "n": n} for n in range(4000)}
    status = await status_with(rest, make_client, results=results, progress="4000/4000", state="completed")
    assert len(status.step_outputs) == 4000
    assert status.step_outputs["step_03999"] == {"rows": list(range(50)), "text": "x" * 500, "n": 3999}
    assert status.progress_percentage == 100.0


async def test_deeply_nested_results(rest, make_client):
    nested: dict = {"leaf": [1, 2.5, True, None, "s"]}
    for _ in range(200):
        nested = {"inner": nested}
    status = await status_with(rest, make_client, results={"deep": nested})
    assert status.step_outputs["deep"] == nested


@pytest.mark.parametrize("results", [None, [], "none", 3])
async def test_results_that_are_no_map_are_no_outputs(rest, make_client, results):
    assert (await status_with(rest, make_client, results=results)).step_outputs == {}


async def test_unknown_fields_are_ignored(rest, make_client):
    status = await status_with(
        rest,
        make_client,
        workflow_version="2.0",
        metadata={"region": "eu"},
        inputs={"ignored": True},
        state="completed",
        progress="4/4",
    )
    assert status.status is ExecutionState.COMPLETED and (status.current_step_index, status.total_steps) == (
        4,
        4,
    )
    rest.default(
        LIST_ROUTE,
        Reply(
            200, {"executions": [summary_body("e1", tenant="acme", labels=["a"])], "total": 1, "next": "x"}
        ),
    )
    executions, total, has_more = await make_client(rest.url).list_executions()
    assert [e.execution_id for e in executions] == ["e1"] and (total, has_more) == (1, False)
    rest.default(
        START_ROUTE, Reply(201, {"data": {"id": "e2", "status": "started", "workflow": "w", "x": 1}})
    )
    assert (await make_client(rest.url).execute_workflow("w")).execution_id == "e2"


# -- listing ----------------------------------------------------------------------------------


async def test_list_summaries_into_models(rest, make_client):
    page = [
        summary_body("e1", status="completed", current_step="notify"),
        summary_body("e2", status="failed"),
        {"id": "e3", "workflow": "billing", "status": "running"},  # only "id", as an older Core lists
    ]
    rest.default(LIST_ROUTE, Reply(200, {"executions": page, "total": 10}))
    executions, total, has_more = await make_client(rest.url).list_executions(limit=3, offset=4)
    assert [(e.execution_id, e.workflow_name, e.status) for e in executions] == [
        ("e1", "orders", ExecutionState.COMPLETED),
        ("e2", "orders", ExecutionState.FAILED),
        ("e3", "billing", ExecutionState.RUNNING),
    ]
    assert executions[0].current_step_name == "notify"
    assert (total, has_more) == (10, True)  # 4 + 3 < 10


@pytest.mark.parametrize(
    ("body", "count", "total"),
    [
        ({"executions": [summary_body("e1")]}, 1, 1),  # no total: what arrived
        ({"executions": [summary_body("e1")], "total": "7"}, 1, 1),
        ({"executions": [summary_body("e1")], "total": True}, 1, 1),
        ({"executions": "none", "total": 0}, 0, 0),
        ({"executions": [summary_body("e1"), "junk", None, 3], "total": 1}, 1, 1),
        ({}, 0, 0),
        ([], 0, 0),
    ],
)
async def test_odd_list_bodies(rest, make_client, body, count, total):
    rest.default(LIST_ROUTE, Reply(200, body))
    executions, total_count, has_more = await make_client(rest.url).list_executions()
    assert (len(executions), total_count, has_more) == (count, total, False)


async def test_list_sends_filters_as_core_reads_them(rest, make_client):
    rest.default(LIST_ROUTE, Reply(200, {"executions": [], "total": 0}))
    client = make_client(rest.url)
    await client.list_executions()
    await client.list_executions(
        workflow_name="orders & more", status="WAITING_FOR_APPROVAL", limit=7, offset=3
    )
    await client.list_executions(status=ExecutionState.FAILED)
    plain, filtered, failed = (r.query for r in rest.received())
    assert plain == {"limit": ["50"], "offset": ["0"]}
    assert filtered == {
        "limit": ["7"],
        "offset": ["3"],
        "workflow": ["orders & more"],
        "status": ["waiting_for_approval"],
    }
    assert failed == {"limit": ["50"], "offset": ["0"], "status": ["failed"]}


async def test_iteration_ends_when_core_promises_more_than_it_gives(rest, make_client):
    # A total that never matches the pages: each pass is unclean, but passes finding nothing new end it.
    def page(request):
        offset = int(request.query["offset"][0])
        ids = [f"e{n}" for n in range(5)][offset : offset + 2]
        return Reply(200, {"executions": [summary_body(i) for i in ids], "total": 9})

    rest.default(LIST_ROUTE, page)
    client = make_client(rest.url)
    seen = [e.execution_id for e in await client.collect(page_size=2)]
    assert seen == ["e0", "e1", "e2", "e3", "e4"]
    # Four pages a pass (the last one empty): the first pass, then the idle passes that end it.
    assert rest.count() == 4 * (1 + MAX_IDLE_PASSES)


# -- starting, resuming, stopping, approving -----------------------------------------------------


async def test_start_sends_the_workflow_and_its_inputs(rest, make_client):
    rest.default(START_ROUTE, Reply(201, {"data": {"id": "e9", "status": "started", "workflow": "orders"}}))
    handle = await make_client(rest.url, token="tok").execute_workflow(
        "orders", {"n": 1, "l": [1, {"a": None}]}
    )
    assert (handle.execution_id, handle.status) == ("e9", "started")
    sent = rest.received(START_ROUTE)[0]
    assert sent.json() == {"workflow": "orders", "input": {"n": 1, "l": [1, {"a": None}]}}
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["authorization"] == "Bearer tok"


@pytest.mark.parametrize(
    "reply",
    [
        Reply(201, {"data": {"status": "started"}}),
        Reply(201, {}),
        Reply(200, {"data": {"id": ""}}),
    ],
    ids=["no-id", "empty", "empty-id"],
)
async def test_start_answer_without_an_id_is_a_start_error(rest, make_client, reply):
    rest.default(START_ROUTE, reply)
    with pytest.raises(WorkflowStartError, match="without an execution id"):
        await make_client(rest.url).execute_workflow("orders")
    assert rest.count() == 1


async def test_start_answered_with_a_flat_body(rest, make_client):
    rest.default(START_ROUTE, Reply(200, {"execution_id": "e5", "status": "running"}))
    handle = await make_client(rest.url).execute_workflow("orders")
    assert (handle.execution_id, handle.status) == ("e5", "running")


async def test_start_refused_for_its_input(rest, make_client):
    rest.default(
        START_ROUTE, Reply(422, {"error": "invalid_input", "message": "input must be a JSON object"})
    )
    with pytest.raises(RequestRefusedError, match="invalid_input") as caught:
        await make_client(rest.url).execute_workflow("orders")
    assert (caught.value.code, caught.value.transport_code) == (ErrorCode.FAILED_PRECONDITION, 422)


async def test_start_not_sent_again_when_the_connection_drops_after_sending(rest, make_client):
    # The request arrived: Core may have started it, so a second attempt could start a second one.
    rest.default(START_ROUTE, Drop())
    with pytest.raises(CoreUnavailableError, match="after 1 attempt:"):
        await make_client(rest.url).execute_workflow("orders")
    assert rest.count(START_ROUTE) == 1


async def test_reads_are_sent_again_when_the_connection_drops(rest, make_client):
    rest.queue(status_route("exec-1"), Drop(), Drop())
    rest.default(status_route("exec-1"), Reply(200, status_body("exec-1")))
    assert (await make_client(rest.url).get_execution_status("exec-1")).execution_id == "exec-1"
    assert rest.count() == 3


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        (Reply(200, {"execution_id": "exec-1", "status": "resumed"}), "resumed"),
        (Reply(200, None), "resumed"),
        (Reply(422, {"error": ":already_running"}), "already_running"),
        (Reply(422, {"error": "already_running"}), "already_running"),
        (Reply(422, {"error": ":not_found"}), "failed_to_resume"),
        (Reply(422, {"error": '"Exception in step :x - boom"'}), "failed_to_resume"),
        (Reply(404, {"error": "not_found"}), "failed_to_resume"),
    ],
)
async def test_resume_answers(rest, make_client, reply, answer):
    rest.default("POST /api/v1/executions/exec-1/resume", reply)
    assert await make_client(rest.url).resume_execution("exec-1") == answer
    assert rest.count() == 1


async def test_resume_refused_otherwise(rest, make_client):
    rest.default("POST /api/v1/executions/exec-1/resume", Reply(409, {"error": "conflict"}))
    with pytest.raises(RequestRefusedError, match="HTTP 409") as caught:
        await make_client(rest.url).resume_execution("exec-1")
    assert (caught.value.code, caught.value.transport_code) == (ErrorCode.ABORTED, 409)
    assert caught.value.execution_id == "exec-1"


async def test_approve_reads_the_state_then_sends_the_response(rest, make_client):
    rest.default(status_route("exec-1"), Reply(200, status_body("exec-1", state="waiting_for_approval")))
    rest.default(
        "POST /api/v1/executions/exec-1/approve", Reply(200, {"execution_id": "exec-1", "status": "approved"})
    )
    assert await make_client(rest.url).approve_execution("exec-1", {"ok": True, "by": "ops"}) == "approved"
    status_call, approval = rest.received()
    assert status_call.route == status_route("exec-1")
    assert approval.json() == {"ok": True, "by": "ops"}


async def test_approve_refused_by_core_is_a_refusal(rest, make_client):
    # The state said waiting, but Core's engine moved on before the approval arrived.
    rest.default(status_route("exec-1"), Reply(200, status_body("exec-1", state="waiting_for_approval")))
    rest.default("POST /api/v1/executions/exec-1/approve", Reply(422, {"error": ":not_waiting_for_approval"}))
    with pytest.raises(RequestRefusedError, match="not_waiting_for_approval") as caught:
        await make_client(rest.url).approve_execution("exec-1")
    assert (caught.value.code, caught.value.transport_code) == (ErrorCode.FAILED_PRECONDITION, 422)
    assert rest.count("POST /api/v1/executions/exec-1/approve") == 1


async def test_stop_refused_otherwise(rest, make_client):
    rest.default("POST /api/v1/executions/exec-1/stop", Reply(422, {"error": "cannot_stop"}))
    with pytest.raises(RequestRefusedError, match="cannot_stop"):
        await make_client(rest.url).stop_execution("exec-1")


async def test_events_with_odd_entries(rest, make_client):
    events = [{"version": 0, "type": "ExecutionStartedEvent", "data": {}, "timestamp": "t"}, "junk", None]
    rest.default(
        "GET /api/v1/executions/exec-1/events", Reply(200, {"execution_id": "exec-1", "events": events})
    )
    assert await make_client(rest.url).get_execution_events("exec-1") == events[:1]


# -- what is sent -------------------------------------------------------------------------------


async def test_ids_are_one_quoted_path_segment(rest, make_client):
    rest.default("*", lambda request: Reply(404, {"error": "not_found"}))
    client = make_client(rest.url)
    for odd in ("a/b", "../../health", "x?limit=1", "a#b", "é 1", "%2F"):
        with pytest.raises(ExecutionNotFoundError):
            await client.get_execution_status(odd)
    assert [r.path for r in rest.received()] == [
        "/api/v1/executions/a%2Fb",
        "/api/v1/executions/..%2F..%2Fhealth",
        "/api/v1/executions/x%3Flimit%3D1",
        "/api/v1/executions/a%23b",
        "/api/v1/executions/%C3%A9%201",
        "/api/v1/executions/%252F",
    ]
    assert all(r.query == {} for r in rest.received())


async def test_headers_sent_on_every_call(rest, make_client):
    rest.default("*", Reply(200, {"executions": [], "total": 0}))
    client = make_client(rest.url, token="tok-abc")
    await client.list_executions()
    await client.list_executions()
    for request in rest.received():
        assert request.headers["authorization"] == "Bearer tok-abc"
        assert request.headers["accept"] == "application/json"
        assert request.headers["user-agent"].startswith("cerebelum-provider/")
    assert len(rest.peers()) == 1  # one kept-alive connection


async def test_no_token_sends_no_authorization(rest, make_client):
    rest.default("*", Reply(200, {"executions": [], "total": 0}))
    await make_client(rest.url).list_executions()
    assert "authorization" not in rest.received()[0].headers


async def test_gateway_path_prefix(rest, make_client):
    rest.default("GET /cerebelum/api/v1/executions/exec-1", Reply(200, status_body("exec-1")))
    rest.default("POST /cerebelum/api/v1/executions/exec-1/resume", Reply(200, {"status": "resumed"}))
    client = make_client(f"{rest.url}/cerebelum/")
    assert (await client.get_execution_status("exec-1")).execution_id == "exec-1"
    assert await client.resume_execution("exec-1") == "resumed"
    assert [r.route for r in rest.received()] == [
        "GET /cerebelum/api/v1/executions/exec-1",
        "POST /cerebelum/api/v1/executions/exec-1/resume",
    ]


async def test_redirect_is_not_followed(rest, make_client):
    # Following a redirect would send the token to wherever it points.
    rest.default("*", Reply(302, None, {"location": "http://elsewhere.invalid/"}))
    with pytest.raises(RequestRefusedError, match="HTTP 302"):
        await make_client(rest.url, token="tok").get_execution_status("exec-1")
    assert rest.count() == 1


@pytest.mark.timeout(60)
async def test_a_body_trickling_in_still_ends_at_the_deadline(rest, make_client):
    # About 30 s of body at 0.1 s a piece: every read is quick, the call is not. httpx's own
    # timeouts bound each read only; the client's timeout bounds the attempt whole.
    answer = Reply(200, status_body("exec-1"))
    rest.default(status_route("exec-1"), Trickle(answer, chunk=1, interval=0.1))
    client = make_client(rest.url, timeout=0.5, retry=RetryConfig(max_attempts=1))
    with pytest.raises(CoreUnavailableError) as caught:
        await client.get_execution_status("exec-1")
    assert caught.value.code is ErrorCode.DEADLINE_EXCEEDED
    assert "WholeCallTimeout" in str(caught.value) and "within 0.5 s" in str(caught.value)
    # The client hung up mid-body: a later piece finds the connection closed.
    assert rest.hung_up_mid_body.wait(10)
