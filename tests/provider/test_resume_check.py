"""Resume is checked, never assumed: the two resume operators against an emulator playing Core's bugs.

The released Core answers "already_running" for a FAILED execution (its engine process lives on
until Core restarts) and "resumed" after a restart, and runs nothing again either way. The emulator
reproduces both (``set_resume_without_effect``, ``real_core_bugs``); the operators, run through
``dag.test()`` with a real Airflow and SQLite, must read the execution back and say it is still
FAILED. Each test builds its own emulator and picks the API it speaks, so gRPC and Core's HTTP API
are covered where they differ. Counts come from the emulator, never from timings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cerebelum_provider.emulator import CoreEmulator
from cerebelum_provider.operators.cerebelum import (
    CerebelumBulkResumeOperator,
    CerebelumResumeExecutionOperator,
)
from tests.dagrun import output_of, run_dag
from tests.provider._deferral import deferred

TOKEN = "resume-check-token-3b7a"
ORDER_STEPS = ["validate", "charge", "ship", "notify"]
BUGGY_ANSWERS = ("already_running", "resumed")

pytestmark = pytest.mark.timeout(120)


def uri_for(core: CoreEmulator, api: str) -> str:
    """A ``cerebelum://`` URI (with the token) for the emulator over ``api``: grpc or http."""
    if api == "http":
        return f"cerebelum://:{TOKEN}@127.0.0.1:{core.http_port}?api=http"
    return f"cerebelum://:{TOKEN}@{core.address}?api=grpc"


@pytest.fixture
def emulator(monkeypatch, airflow_db) -> Iterator[Callable[..., CoreEmulator]]:
    """Start an emulator (manual clock, token) behind ``cerebelum_default`` over the API asked for."""
    started: list[CoreEmulator] = []

    def start(api: str = "grpc", **kwargs: Any) -> CoreEmulator:
        core = CoreEmulator(token=TOKEN, **kwargs).start()
        started.append(core)
        core.define_workflow("orders", ORDER_STEPS)
        monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", uri_for(core, api))
        return core

    yield start
    for core in reversed(started):
        core.stop()


def failed_execution(core: CoreEmulator) -> str:
    execution_id = core.start_execution(
        "orders", fail_at="charge", error_kind="card_declined", error_message="card declined"
    )
    core.run_until_settled(execution_id)
    return execution_id


def seed_failed(core: CoreEmulator, count: int) -> list[str]:
    ids = [core.start_execution("orders", fail_at=0) for _ in range(count)]
    core.run_until_settled()
    return ids


# Resume one execution ----------------------------------------------------------------------


@pytest.mark.parametrize("api", ["grpc", "http"])
@pytest.mark.parametrize("answer", BUGGY_ANSWERS)
def test_resume_operator_fails_when_the_execution_stays_failed(emulator, api, answer, capfd):
    core = emulator(api)
    execution_id = failed_execution(core)
    core.set_resume_without_effect(answer)

    _, results = run_dag("cerebelum_resume_check_no_wait", {"execution_id": execution_id})

    state, xcoms, _ = results["resume"]
    assert state == "failed"
    assert "return_value" not in xcoms
    output = output_of(capfd)
    assert (
        f"Cerebelum Core answered '{answer}' for execution {execution_id} but it is still FAILED "
        "after 0.2 s: Core did not resume it"
    ) in output
    assert "Core's error: " in output and "card declined" in output
    assert TOKEN not in output
    # Not retried: the resume was sent once and read back once.
    assert core.resume_count(execution_id) == 1
    assert core.call_counts()["ResumeExecution"] == 1
    assert core.call_counts()["GetExecutionStatus"] == 1


@pytest.mark.parametrize("answer", BUGGY_ANSWERS)
def test_an_execution_left_failed_fails_the_task_without_airflow_retries(emulator, answer, capfd):
    core = emulator("http")
    execution_id = failed_execution(core)
    core.set_resume_without_effect(answer)

    _, results = run_dag("cerebelum_resume_check_retried", {"execution_id": execution_id})

    assert results["resume"][0] == "failed"
    assert results["resume"].try_number == 1  # retries=1, unused: the same resume gets the same answer
    assert core.call_counts()["ResumeExecution"] == 1
    assert f"for execution {execution_id} but it is still FAILED" in output_of(capfd)


@pytest.mark.parametrize("api", ["grpc", "http"])
def test_an_unknown_execution_fails_the_task_without_airflow_retries(emulator, api, capfd):
    core = emulator(api)

    _, results = run_dag("cerebelum_resume_check_retried", {"execution_id": "no-such-execution"})

    assert results["resume"][0] == "failed"
    assert results["resume"].try_number == 1
    assert core.call_counts()["ResumeExecution"] == 1
    output = output_of(capfd)
    assert "refused to resume execution no-such-execution (failed_to_resume" in output
    assert "knows no execution 'no-such-execution'" in output


@pytest.mark.parametrize("api", ["grpc", "http"])
def test_a_connection_at_the_other_apis_port_fails_the_task_without_airflow_retries(
    emulator, monkeypatch, api, capfd
):
    core = emulator(api)
    other_port = core.http_port if api == "grpc" else int(core.address.rsplit(":", 1)[1])
    monkeypatch.setenv(
        "AIRFLOW_CONN_CEREBELUM_DEFAULT", f"cerebelum://:{TOKEN}@127.0.0.1:{other_port}?api={api}"
    )

    _, results = run_dag("cerebelum_resume_check_retried", {"execution_id": "any-execution"})

    assert results["resume"][0] == "failed"
    assert results["resume"].try_number == 1
    fix = "api=http" if api == "grpc" else "api=grpc"
    assert fix in output_of(capfd)  # the message names the setting to change


def test_an_empty_execution_id_fails_the_task_without_airflow_retries_and_sends_nothing(emulator, capfd):
    core = emulator("http")

    _, results = run_dag("cerebelum_resume_check_retried", {"execution_id": ""})

    assert results["resume"][0] == "failed"
    assert results["resume"].try_number == 1
    assert "ResumeExecution" not in core.call_counts()
    assert "execution_id must be a non-empty" in output_of(capfd)


@pytest.mark.parametrize(
    ("api", "answer"),
    [("grpc", None), ("http", None), ("http", "already_running"), ("grpc", "already_running")],
    ids=["grpc-refused", "http-refused", "http-already_running", "grpc-already_running"],
)
def test_a_completed_execution_is_already_completed_and_nothing_is_resumed(emulator, api, answer, capfd):
    # Core refuses a completed execution (failed_to_resume); the released Core answers
    # "already_running" for it instead. Either way nothing runs, and the verdict says so.
    core = emulator(api)
    execution_id = core.start_execution("orders")
    core.run_until_settled(execution_id)
    core.set_resume_without_effect(answer)
    steps_before = core.step_runs(execution_id)

    _, results = run_dag("cerebelum_resume_check_retried", {"execution_id": execution_id})

    state, xcoms, _ = results["resume"]
    assert state == "success"
    assert xcoms["return_value"] == {"execution_id": execution_id, "resume_status": "already_completed"}
    assert core.call_counts()["ResumeExecution"] == 1
    assert core.step_runs(execution_id) == steps_before == dict.fromkeys(ORDER_STEPS, 1)
    assert f"Cerebelum execution {execution_id} was already COMPLETED: nothing was resumed" in output_of(capfd)


@pytest.mark.parametrize("mode", ["poll", "deferrable"])
def test_resume_and_wait_fails_at_the_check_without_waiting(emulator, mode, capfd, caplog):
    core = emulator()
    execution_id = failed_execution(core)
    core.set_resume_without_effect("already_running")

    _, results = run_dag(f"cerebelum_resume_check_{mode}", {"execution_id": execution_id})

    assert results["resume"][0] == "failed"
    assert f"for execution {execution_id} but it is still FAILED after 0.2 s" in output_of(capfd)
    assert not deferred(caplog)
    assert core.call_counts()["GetExecutionStatus"] == 1


def test_the_default_grace_is_one_second(emulator, capfd):
    core = emulator()
    execution_id = failed_execution(core)
    core.set_resume_without_effect("already_running")

    _, results = run_dag("cerebelum_resume_check_default_grace", {"execution_id": execution_id})

    assert results["resume"][0] == "failed"
    assert f"'already_running' for execution {execution_id} but it is still FAILED after 1.0 s" in (
        output_of(capfd)
    )


def test_the_measured_release_over_http_reads_it_still_failed(emulator, capfd):
    core = emulator("http", real_core_bugs=True)
    execution_id = failed_execution(core)

    _, results = run_dag("cerebelum_resume_check_no_wait", {"execution_id": execution_id})

    assert results["resume"][0] == "failed"
    assert f"answered 'already_running' for execution {execution_id} but it is still FAILED" in (
        output_of(capfd)
    )


def test_the_measured_release_over_grpc_cannot_be_read_back_and_says_why(emulator, capfd):
    # Core's gRPC status handler crashes on every existing execution: the check cannot succeed.
    core = emulator("grpc", real_core_bugs=True)
    execution_id = failed_execution(core)

    _, results = run_dag("cerebelum_resume_check_no_wait", {"execution_id": execution_id})

    assert results["resume"][0] == "failed"
    output = output_of(capfd)
    assert (
        f"Cerebelum Core answered 'already_running' for execution {execution_id}, but reading it back "
        "to check that it left FAILED failed: "
    ) in output
    assert 'UNKNOWN "Internal Server Error"' in output and "Core's HTTP API answers these calls" in output
    # A crash is not retried: one read.
    assert core.call_counts()["GetExecutionStatus"] == 1


@pytest.mark.parametrize("api", ["grpc", "http"])
def test_a_real_resume_succeeds_with_the_same_xcom_as_before(emulator, api):
    core = emulator(api)
    execution_id = failed_execution(core)

    _, results = run_dag("cerebelum_resume_check_no_wait", {"execution_id": execution_id})

    state, xcoms, _ = results["resume"]
    assert state == "success"
    assert xcoms["return_value"] == {"execution_id": execution_id, "resume_status": "resumed"}
    assert core.resume_count(execution_id) == 1
    assert core.call_counts()["GetExecutionStatus"] == 1


@pytest.mark.waits
def test_a_transient_error_while_checking_is_retried(emulator):
    import grpc

    core = emulator()
    execution_id = failed_execution(core)
    # Fewer failures than the connection's one budget of 5 attempts.
    core.fail_next(4, code=grpc.StatusCode.UNAVAILABLE, rpcs="GetExecutionStatus")

    _, results = run_dag("cerebelum_resume_check_no_wait", {"execution_id": execution_id})

    assert results["resume"][0] == "success"
    assert core.call_counts()["GetExecutionStatus"] == 5
    assert core.call_counts()["ResumeExecution"] == 1


@pytest.mark.waits
def test_one_resume_against_a_core_that_stays_down_sends_at_most_the_budget(emulator):
    import grpc

    core = emulator()
    execution_id = failed_execution(core)
    core.fail_next(1000, code=grpc.StatusCode.UNAVAILABLE, rpcs="ResumeExecution")

    _, results = run_dag("cerebelum_resume_check_no_wait", {"execution_id": execution_id})

    assert results["resume"][0] == "failed"
    # The connection's max_attempts (5 by default) is the whole budget: no loop retries around it.
    assert core.call_counts()["ResumeExecution"] == 5


# Bulk resume -------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["grpc", "http"])
@pytest.mark.parametrize("answer", BUGGY_ANSWERS)
def test_bulk_resume_lists_executions_left_failed_under_not_resumed_and_fails(emulator, api, answer, capfd):
    core = emulator(api)
    ids = seed_failed(core, 12)
    core.set_resume_without_effect(answer)

    _, results = run_dag("cerebelum_bulk_resume_check_fail_on_error_true")

    state, xcoms, _ = results["bulk_resume"]
    assert state == "failed"
    summary = xcoms["summary"]
    assert sorted(summary["not_resumed"]) == sorted(ids)
    assert summary["resumed"] == summary["already_running"] == [] and summary["errors"] == {}
    output = output_of(capfd)
    assert "did not resume everything: matched=12, resumed=0, already_running=0" in output
    assert "errors=0, not_resumed=12" in output
    assert "12 execution(s) still FAILED 0.2 s after Core answered" in output
    # Each resumed once although every listing pass finds them FAILED again.
    assert core.call_counts()["ResumeExecution"] == 12
    assert [core.resume_count(execution_id) for execution_id in ids] == [1] * 12


def test_bulk_resume_without_fail_on_error_succeeds_with_not_resumed_in_xcom(emulator):
    core = emulator()
    ids = seed_failed(core, 12)
    core.set_resume_without_effect("already_running")

    _, results = run_dag("cerebelum_bulk_resume_check_fail_on_error_false")

    state, xcoms, _ = results["bulk_resume"]
    assert state == "success"
    summary = xcoms["return_value"]
    assert sorted(summary["not_resumed"]) == sorted(ids)
    assert summary["matched"] == 12 and summary["resumed"] == [] and summary["errors"] == {}


@pytest.mark.parametrize("api", ["grpc", "http"])
def test_bulk_resume_against_a_core_that_resumes_is_unchanged(emulator, api):
    core = emulator(api)
    ids = seed_failed(core, 12)

    _, results = run_dag("cerebelum_bulk_resume_check_fail_on_error_true")

    state, xcoms, _ = results["bulk_resume"]
    assert state == "success"
    summary = xcoms["return_value"]
    assert sorted(summary["resumed"]) == sorted(ids)
    assert summary["not_resumed"] == [] and summary["errors"] == {} and summary["already_running"] == []
    # Over gRPC one listing of the workflow's RUNNING executions checks all 12; over HTTP Core lists
    # a resumed execution as FAILED until its step runs again, so each is read back alone.
    assert core.call_counts().get("GetExecutionStatus", 0) == (0 if api == "grpc" else 12)


# Construction ------------------------------------------------------------------------------


OPERATORS = [
    pytest.param(CerebelumResumeExecutionOperator, {"execution_id": "e"}, id="resume"),
    pytest.param(CerebelumBulkResumeOperator, {"workflow_name": "orders"}, id="bulk"),
]


@pytest.mark.parametrize(("operator", "arguments"), OPERATORS)
@pytest.mark.parametrize(
    ("grace", "error"),
    [(-1, ValueError), (float("nan"), ValueError), (1000, ValueError), ("1", TypeError), (True, TypeError)],
)
def test_a_bad_resume_check_grace_is_refused_naming_it(operator, arguments, grace, error):
    with pytest.raises(error, match="resume_check_grace"):
        operator(task_id="resume", resume_check_grace=grace, **arguments)


@pytest.mark.parametrize(("operator", "arguments"), OPERATORS)
def test_a_zero_grace_reads_at_once(operator, arguments):
    assert operator(task_id="resume", resume_check_grace=0, **arguments).resume_check_grace == 0.0
