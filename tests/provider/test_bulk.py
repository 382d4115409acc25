"""The bulk-resume engine against the emulator: exactly once, none skipped, exact summaries.

Core's listing order moves while a bulk resume pages through it (every resumed execution leaves
the FAILED set; executions that fail again come back at the front), so these tests seed more
executions than one page holds and let the emulator reorder as the run goes.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from cerebelum_provider.bulk import BulkResumeSummary, resume_matching
from cerebelum_provider.client import ExecutionClient, RetryConfig
from cerebelum_provider.exceptions import CerebelumAuthError
from cerebelum_provider.models import ExecutionState
from tests.core_apis import core_url

pytestmark = pytest.mark.timeout(90)

FAST_RETRY = RetryConfig(max_attempts=5, initial_backoff=0.01, max_backoff=0.05)


def seed_failed(core, count: int, workflow: str = "orders", *, fail_times: int = 1) -> list[str]:
    """Start ``count`` executions that fail at their first step; return their ids."""
    ids = [
        core.start_execution(workflow, inputs={"n": n}, fail_at=0, fail_times=fail_times)
        for n in range(count)
    ]
    core.run_until_settled()
    assert set(ids) <= set(core.execution_ids(ExecutionState.FAILED))
    return ids


def client_for(core, **kwargs) -> ExecutionClient:
    kwargs.setdefault("retry", FAST_RETRY)
    return ExecutionClient(core_url(core), **kwargs)


async def test_resumes_each_failed_execution_once_across_pages(core):
    orders = seed_failed(core, 350)
    billing = seed_failed(core, 30, "billing")
    running = core.start_execution("orders")
    progress: list[dict[str, int]] = []

    async with client_for(core) as client:
        summary = await resume_matching(
            client, workflow_name="orders", max_concurrency=8, on_progress=progress.append
        )

    assert summary.matched == 350
    assert sorted(summary.resumed) == sorted(orders)
    assert summary.already_running == summary.failed_to_resume == summary.would_resume == []
    assert summary.errors == {}
    assert [core.resume_count(execution_id) for execution_id in orders] == [1] * 350
    assert [core.resume_count(execution_id) for execution_id in billing + [running]] == [0] * 31
    assert core.call_counts()["ResumeExecution"] == 350
    # Each "resumed" is read back once, to be sure it left FAILED: alone, as Core lists a resumed
    # execution whose step has not run again yet as FAILED over REST (see the coalesced tests below).
    assert core.call_counts()["GetExecutionStatus"] == 350
    assert (
        progress[-1]
        == summary.counts()
        == {
            "matched": 350,
            "resumed": 350,
            "already_running": 0,
            "failed_to_resume": 0,
            "errors": 0,
            "not_resumed": 0,
            "rerun": 0,
            "already_rerun": 0,
            "would_resume": 0,
            "would_rerun": 0,
        }
    )


async def test_executions_that_fail_again_are_not_resumed_twice(core):
    # Each execution fails twice: once resumed, moving it on makes it FAILED again, back at the
    # front of Core's order, so later pages and passes list it a second time.
    ids = seed_failed(core, 240, fail_times=2)
    handled = 0

    def refail_resumed(counts: dict[str, int]) -> None:
        nonlocal handled
        handled += 1
        if handled % 20 == 0:
            core.advance()

    async with client_for(core) as client:
        summary = await resume_matching(
            client,
            workflow_name="orders",
            max_concurrency=4,
            on_progress=refail_resumed,
            resume_check_grace=0,
        )

    core.advance()
    assert summary.matched == 240
    # One that fails again before its check reads FAILED, as one Core did not resume would:
    # it is counted under not_resumed. Either way each is taken once and resumed once.
    assert sorted(summary.resumed + summary.not_resumed) == sorted(ids)
    assert summary.errors == {} and summary.already_running == []
    assert [core.resume_count(execution_id) for execution_id in ids] == [1] * 240
    assert core.call_counts()["ResumeExecution"] == 240
    assert core.call_counts()["GetExecutionStatus"] == 240
    # They did fail again (so the listing did repeat them): the run left them FAILED a second time.
    assert set(ids) <= set(core.execution_ids(ExecutionState.FAILED))


async def test_a_blip_within_the_clients_budget_is_cured(core):
    (execution_id,) = seed_failed(core, 1)
    # 4 failures: the 5th attempt of the client's one budget succeeds.
    core.fail_next(4, code=grpc.StatusCode.UNAVAILABLE, rpcs="ResumeExecution")

    async with client_for(core) as client:
        summary = await resume_matching(client, workflow_name="orders")

    assert summary.resumed == [execution_id] and summary.errors == {}
    assert core.call_counts()["ResumeExecution"] == 5
    assert core.resume_count(execution_id) == 1


@pytest.mark.apis("grpc", "http")  # each API names an outage in its own words
async def test_an_execution_still_unavailable_after_every_retry_is_an_error(core, core_api):
    ids = seed_failed(core, 2)
    # One budget of 5 attempts, all failing, for the first one resumed: nothing retries around it.
    core.fail_next(5, code=grpc.StatusCode.UNAVAILABLE, rpcs="ResumeExecution")

    async with client_for(core) as client:
        summary = await resume_matching(client, workflow_name="orders", max_concurrency=1)

    assert summary.matched == 2 and len(summary.resumed) == 1 and len(summary.errors) == 1
    assert sorted([*summary.resumed, *summary.errors]) == sorted(ids)
    (failed_id,) = summary.errors
    assert ("UNAVAILABLE" if core_api == "grpc" else "HTTP 503") in summary.errors[failed_id]
    assert core.resume_count(failed_id) == 0 and core.resume_count(summary.resumed[0]) == 1
    assert core.call_counts()["ResumeExecution"] == 6


async def test_dry_run_resumes_nothing(core):
    ids = seed_failed(core, 120)

    async with client_for(core) as client:
        summary = await resume_matching(client, workflow_name="orders", dry_run=True)

    assert summary.dry_run is True
    assert summary.matched == 120
    assert sorted(summary.would_resume) == sorted(ids)
    assert summary.resumed == summary.already_running == summary.failed_to_resume == []
    assert "ResumeExecution" not in core.call_counts()
    assert sorted(core.execution_ids(ExecutionState.FAILED)) == sorted(ids)


async def test_max_executions_stops_taking_after_the_limit(core):
    ids = seed_failed(core, 150)

    async with client_for(core) as client:
        summary = await resume_matching(client, workflow_name="orders", max_executions=101, max_concurrency=3)

    assert summary.matched == 101
    assert len(set(summary.resumed)) == 101
    assert sum(core.resume_count(execution_id) for execution_id in ids) == 101
    assert len(core.execution_ids(ExecutionState.FAILED)) == 49


@pytest.mark.apis("grpc", "http")  # each API names a refusal in its own words
async def test_refusals_and_errors_are_recorded_not_raised(core, core_api):
    failed = seed_failed(core, 5)
    completed = core.start_execution("orders")
    core.complete(completed)
    # INTERNAL is not transient: recorded as an error for the executions it hits, no retry.
    core.fail_next(2, code=grpc.StatusCode.INTERNAL, rpcs="ResumeExecution")

    async with client_for(core) as client:
        summary = await resume_matching(
            client, workflow_name="orders", states=("FAILED", ExecutionState.COMPLETED), max_concurrency=1
        )

    assert summary.matched == 6
    assert summary.failed_to_resume == [completed]
    assert len(summary.errors) == 2
    internal = "INTERNAL" if core_api == "grpc" else "HTTP 500"
    assert all(internal in message for message in summary.errors.values())
    assert sorted(summary.resumed + list(summary.errors)) == sorted(failed)
    assert summary.failed is True
    assert "failed_to_resume=1" in summary.describe() and "errors=2" in summary.describe()


async def test_every_workflow_when_no_name_and_a_second_run_finds_nothing(core):
    ids = seed_failed(core, 40) + seed_failed(core, 40, "billing")

    async with client_for(core) as client:
        first = await resume_matching(client)
        core.advance()
        second = await resume_matching(client)

    assert sorted(first.resumed) == sorted(ids)
    assert second.matched == 0 and second.to_dict()["resumed"] == []


async def test_auth_error_stops_the_run_at_once(core_factory):
    core = core_factory(token="s3cret")
    seed_failed(core, 10)

    async with client_for(core, token="wrong") as client:
        with pytest.raises(CerebelumAuthError):
            await resume_matching(client, workflow_name="orders")

    assert "ResumeExecution" not in core.call_counts()


# Resume is checked, never assumed ------------------------------------------------------------


class InFlightCounter:
    """The real client, counting its resume and status calls in flight (to see the shared bound)."""

    def __init__(self, client: ExecutionClient) -> None:
        self._client = client
        self.in_flight = 0
        self.peak = 0

    def iter_executions(self, *args, **kwargs):
        return self._client.iter_executions(*args, **kwargs)

    async def _counted(self, call):
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await call
        finally:
            self.in_flight -= 1

    async def resume_execution(self, *args, **kwargs):
        return await self._counted(self._client.resume_execution(*args, **kwargs))

    async def get_execution_status(self, *args, **kwargs):
        return await self._counted(self._client.get_execution_status(*args, **kwargs))

    async def list_executions(self, *args, **kwargs):
        return await self._counted(self._client.list_executions(*args, **kwargs))


@pytest.mark.parametrize("answer", ["already_running", "resumed"])
async def test_a_resume_without_effect_is_not_resumed_and_never_sent_twice(core, answer):
    # The released Core: FAILED executions answer "already_running" (or "resumed" after a restart)
    # and stay FAILED, so every listing pass finds them again.
    ids = seed_failed(core, 130)
    running = core.start_execution("orders")
    core.set_resume_without_effect(answer)

    async with client_for(core) as client:
        summary = await resume_matching(
            client,
            workflow_name="orders",
            states=("FAILED", "RUNNING"),
            max_concurrency=8,
            resume_check_grace=0.2,
        )

    assert summary.matched == 131
    assert sorted(summary.not_resumed) == sorted(ids)
    assert summary.resumed == [] and summary.failed_to_resume == [] and summary.errors == {}
    # A RUNNING execution answers "already_running" and reads RUNNING: it really is running.
    assert summary.already_running == [running]
    assert summary.failed is True
    assert "not_resumed=130" in summary.describe()
    assert summary.to_dict()["not_resumed"] == summary.not_resumed
    assert [core.resume_count(execution_id) for execution_id in ids] == [1] * 130
    assert core.call_counts()["ResumeExecution"] == 131
    assert core.call_counts()["GetExecutionStatus"] == 131
    assert set(ids) <= set(core.execution_ids(ExecutionState.FAILED))


@pytest.mark.apis("http")
async def test_the_measured_release_over_rest_lists_every_failed_execution_as_not_resumed(core_factory):
    # All the measured bugs: gRPC status reads crash (REST is spared, so only REST can list and
    # check), resumes answer "already_running" (REST 422) and change nothing.
    core = core_factory(real_core_bugs=True)
    ids = seed_failed(core, 40)

    async with client_for(core) as client:
        summary = await resume_matching(client, workflow_name="orders", resume_check_grace=0)

    assert sorted(summary.not_resumed) == sorted(ids)
    assert summary.resumed == summary.already_running == [] and summary.errors == {}
    assert core.call_counts()["ResumeExecution"] == 40


async def test_checks_wait_out_their_grace_side_by_side_within_the_bound(core):
    import time

    ids = seed_failed(core, 120)
    core.set_latency(0.01)

    async with client_for(core) as client:
        counting = InFlightCounter(client)
        started = time.monotonic()
        summary = await resume_matching(
            counting, workflow_name="orders", max_concurrency=3, resume_check_grace=1.0
        )
        elapsed = time.monotonic() - started

    assert sorted(summary.resumed) == sorted(ids)
    # One grace per execution in turn would take 120 / 3 = 40 s at least; side by side they take one
    # grace, plus at most 10 s that a due check waits for others to share its listing.
    assert 1.0 <= elapsed < 40
    assert counting.peak == 3
    assert core.call_counts()["GetExecutionStatus"] == 120


async def test_a_transient_error_while_checking_is_retried_like_the_resume(core):
    (execution_id,) = seed_failed(core, 1)
    # 4 failures: the 5th attempt of the client's one budget reads it.
    core.fail_next(4, code=grpc.StatusCode.UNAVAILABLE, rpcs="GetExecutionStatus")

    async with client_for(core) as client:
        summary = await resume_matching(client, workflow_name="orders", resume_check_grace=0)

    assert summary.resumed == [execution_id] and summary.errors == {}
    assert core.call_counts()["GetExecutionStatus"] == 5
    assert core.resume_count(execution_id) == 1


@pytest.mark.apis("grpc", "http")  # each API names Core's crash in its own words
async def test_a_check_that_cannot_be_read_is_an_error_naming_what_core_answered(core, core_api):
    # One execution per workflow: each check is read alone (a listing would cost as much).
    ids = [seed_failed(core, 1, workflow)[0] for workflow in ("orders", "billing", "shipping")]
    core.fail_next(1, code=grpc.StatusCode.INTERNAL, rpcs="GetExecutionStatus")

    # One attempt per call: over HTTP the emulator's 500 is the released Core's busy-engine answer,
    # which a retry would ride out (tests/provider/test_busy_core.py).
    async with client_for(core, retry=RetryConfig(max_attempts=1)) as client:
        summary = await resume_matching(client, max_concurrency=1, resume_check_grace=0)

    assert len(summary.resumed) == 2 and len(summary.errors) == 1
    assert sorted(summary.resumed + list(summary.errors)) == sorted(ids)
    ((failed_id, message),) = summary.errors.items()
    assert message.startswith(f"Core answered 'resumed' to the resume, but reading execution {failed_id}")
    assert ("INTERNAL" if core_api == "grpc" else "HTTP 500") in message
    # The resume itself was sent once; it is the check that could not be read.
    assert core.resume_count(failed_id) == 1
    assert core.call_counts()["GetExecutionStatus"] == 3


@pytest.mark.apis("grpc")  # the crash is in Core's gRPC status handler; its HTTP API answers
async def test_a_check_hitting_cores_status_crash_is_an_error_with_its_message(core):
    import asyncio

    ids = seed_failed(core, 5)

    async with client_for(core) as client:
        run = asyncio.create_task(resume_matching(client, workflow_name="orders", resume_check_grace=2.0))
        # Once every resume is answered the FAILED set is empty, so listing pages are empty and
        # do not crash; only the checks, due 2 s later, meet the gRPC status bug.
        while core.call_counts().get("ResumeExecution", 0) < 5:
            await asyncio.sleep(0.01)
        core.set_status_crash(True)
        summary = await run

    assert sorted(summary.errors) == sorted(ids) and summary.resumed == []
    assert all('UNKNOWN "Internal Server Error"' in message for message in summary.errors.values())
    assert all("to check it failed" in message for message in summary.errors.values())
    assert core.call_counts()["GetExecutionStatus"] == 5


async def test_normal_emulator_outcomes_are_unchanged_with_the_default_grace(core):
    ids = seed_failed(core, 20)
    running = core.start_execution("orders")

    async with client_for(core) as client:
        summary = await resume_matching(client, workflow_name="orders", states=("FAILED", "RUNNING"))

    assert sorted(summary.resumed) == sorted(ids)
    assert summary.already_running == [running]
    assert summary.not_resumed == [] and summary.errors == {} and summary.failed is False


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"max_concurrency": 0}, ValueError, "max_concurrency"),
        ({"max_concurrency": -3}, ValueError, "max_concurrency"),
        ({"max_concurrency": 2.5}, TypeError, "max_concurrency"),
        ({"max_concurrency": True}, TypeError, "max_concurrency"),
        ({"max_concurrency": 10_000}, ValueError, "max_concurrency"),
        ({"max_executions": 0}, ValueError, "max_executions"),
        ({"max_executions": "10"}, TypeError, "max_executions"),
        ({"states": []}, ValueError, "states"),
        ({"states": "NOT_A_STATE"}, ValueError, "states"),
        ({"states": ["FAILED", 3]}, TypeError, "states"),
        ({"states": "UNSPECIFIED"}, ValueError, "states"),
        ({"states": None}, TypeError, "states"),
        ({"workflow_name": ""}, ValueError, "workflow_name"),
        ({"workflow_name": 7}, TypeError, "workflow_name"),
        ({"dry_run": "yes"}, TypeError, "dry_run"),
        ({"skip_completed_steps": 1}, TypeError, "skip_completed_steps"),
        ({"on_progress": "print"}, TypeError, "on_progress"),
        ({"resume_check_grace": -0.5}, ValueError, "resume_check_grace"),
        ({"resume_check_grace": float("nan")}, ValueError, "resume_check_grace"),
        ({"resume_check_grace": float("inf")}, ValueError, "resume_check_grace"),
        ({"resume_check_grace": 301}, ValueError, "resume_check_grace"),
        ({"resume_check_grace": "1"}, TypeError, "resume_check_grace"),
        ({"resume_check_grace": True}, TypeError, "resume_check_grace"),
        ({"resume_check_grace": None}, TypeError, "resume_check_grace"),
    ],
)
async def test_bad_arguments_are_refused_before_any_call(core, kwargs, error, names):
    seed_failed(core, 3)

    async with client_for(core) as client:
        with pytest.raises(error, match=names):
            await resume_matching(client, **kwargs)

    assert core.call_counts() == {}


def test_summary_to_dict_is_json_safe_and_complete():
    import json

    summary = BulkResumeSummary(
        matched=6,
        resumed=["a"],
        already_running=["b"],
        errors={"c": "boom"},
        not_resumed=["d"],
        rerun={"e": "e-rerun"},
        already_rerun={"f": "f-rerun"},
    )
    data = json.loads(json.dumps(summary.to_dict()))
    assert data == {
        "matched": 6,
        "resumed": ["a"],
        "already_running": ["b"],
        "failed_to_resume": [],
        "errors": {"c": "boom"},
        "not_resumed": ["d"],
        "rerun": {"e": "e-rerun"},
        "already_rerun": {"f": "f-rerun"},
        "would_resume": [],
        "would_rerun": [],
        "dry_run": False,
    }
    assert summary.failed is True
    assert summary.describe() == (
        "matched=6, resumed=1, already_running=1, failed_to_resume=0, errors=1, not_resumed=1, "
        "rerun=1, already_rerun=1"
    )


def test_a_summary_with_only_not_resumed_has_failed():
    summary = BulkResumeSummary(matched=1, not_resumed=["a"])
    assert summary.failed is True
    assert BulkResumeSummary(matched=1, resumed=["a"], already_running=["b"]).failed is False
    # A rerun is no failure of the run, and no resume either.
    assert BulkResumeSummary(matched=2, rerun={"a": "a2"}, already_rerun={"b": "b2"}).failed is False


# Checks read back a listing at a time ---------------------------------------------------------


class StepsRunAfterResume:
    """The real client; after each resume Core answers, the emulator runs the execution on as a
    live Core would before the check: one step (so Core's log holds a row that lists it as
    RUNNING), or to its end for the ids in ``settle``. With ``check_listing_fault``, the listings
    that check resumes wait until the run's own listing is over, then meet that fault."""

    def __init__(self, client: ExecutionClient, core, settle=(), check_listing_fault=None) -> None:
        self._client = client
        self._core = core
        self._settle = set(settle)
        self._check_listing_fault = check_listing_fault
        self._listing_over = asyncio.Event()
        self._listed_ids: set[str] = set()

    def iter_executions(self, *args, **kwargs):
        return self._listed(self._client.iter_executions(*args, **kwargs))

    async def _listed(self, executions):
        new = 0
        async for execution in executions:
            if execution.execution_id not in self._listed_ids:
                self._listed_ids.add(execution.execution_id)
                new += 1
            yield execution
        if new == 0:
            # A bulk run lists until a whole listing brings nothing new: this was its last.
            self._listing_over.set()

    async def list_executions(self, *args, **kwargs):
        if self._check_listing_fault is not None:
            await self._listing_over.wait()
            self._check_listing_fault()
        return await self._client.list_executions(*args, **kwargs)

    async def get_execution_status(self, *args, **kwargs):
        return await self._client.get_execution_status(*args, **kwargs)

    async def resume_execution(self, execution_id, **kwargs):
        answer = await self._client.resume_execution(execution_id, **kwargs)
        if execution_id in self._settle:
            self._core.run_until_settled(execution_id)
        else:
            self._core.advance(execution_id=execution_id)
        return answer


def calls_to_core(core) -> int:
    return sum(core.call_counts().values())


@pytest.mark.apis("grpc", "http")  # each API's listing filter reads its own view of Core's log
async def test_checks_are_read_back_a_listing_at_a_time(core):
    ids = seed_failed(core, 300)
    others = seed_failed(core, 30, "billing")

    async with client_for(core) as client:
        summary = await resume_matching(
            StepsRunAfterResume(client, core), workflow_name="orders", max_concurrency=8
        )

    assert sorted(summary.resumed) == sorted(ids)
    assert summary.not_resumed == summary.already_running == [] and summary.errors == {}
    assert [core.resume_count(execution_id) for execution_id in ids] == [1] * 300
    assert [core.resume_count(execution_id) for execution_id in others] == [0] * 30
    # Resumes, listings and reads together: at most 1.1 calls per execution, where reading
    # each back alone cost two.
    assert core.call_counts()["ResumeExecution"] == 300
    assert calls_to_core(core) <= 1.1 * 300
    assert core.call_counts().get("GetExecutionStatus", 0) < 30


@pytest.mark.apis("grpc", "http")  # each API's listing filter reads its own view of Core's log
async def test_checks_the_listing_does_not_show_are_read_alone_with_the_same_verdicts(core):
    # Resumed and running (listed), resumed and already COMPLETED (not listed as running), and
    # failed again before the check (not listed as running): the verdicts a read of each gives.
    running = seed_failed(core, 150)
    completed = seed_failed(core, 20)
    failed_again = seed_failed(core, 20, fail_times=2)

    async with client_for(core) as client:
        summary = await resume_matching(
            StepsRunAfterResume(client, core, settle=completed + failed_again),
            workflow_name="orders",
            max_concurrency=8,
        )

    assert sorted(summary.resumed) == sorted(running + completed)
    assert sorted(summary.not_resumed) == sorted(failed_again)
    assert summary.errors == {} and summary.already_running == []
    resumed_once = [core.resume_count(execution_id) for execution_id in running + completed + failed_again]
    assert resumed_once == [1] * 190
    # The 40 the listing cannot answer are read alone, and not many more.
    assert 40 <= core.call_counts()["GetExecutionStatus"] < 60


async def test_checks_are_read_alone_when_their_listing_is_refused(core):
    ids = seed_failed(core, 120)

    def refuse() -> None:
        core.fail_next(FAST_RETRY.max_attempts, code=grpc.StatusCode.UNAVAILABLE, rpcs="ListExecutions")

    await check_reads_alone(core, ids, refuse)


@pytest.mark.apis("grpc")  # the emulator answers a broken listing with an empty page over gRPC only
async def test_checks_are_read_alone_when_their_listing_is_empty(core):
    ids = seed_failed(core, 120)

    await check_reads_alone(core, ids, core.break_listing)


async def check_reads_alone(core, ids: list[str], check_listing_fault) -> None:
    async with client_for(core) as client:
        summary = await resume_matching(
            StepsRunAfterResume(client, core, check_listing_fault=check_listing_fault),
            workflow_name="orders",
            max_concurrency=8,
        )

    assert sorted(summary.resumed) == sorted(ids)
    assert summary.not_resumed == [] and summary.errors == {}
    assert [core.resume_count(execution_id) for execution_id in ids] == [1] * len(ids)
    assert core.call_counts()["GetExecutionStatus"] == len(ids)
