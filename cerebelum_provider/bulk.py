"""Resume every execution that matches a filter, each at most once, none skipped.

The engine behind ``CerebelumBulkResumeOperator``, usable without Airflow::

    async with ExecutionClient("localhost:9090") as client:
        summary = await resume_matching(client, workflow_name="orders")

How it stays exact while Core's listing moves under it (see the wire contract: offset paging
over a changing set skips and repeats items, and every resumed execution leaves the FAILED set):

- Listing goes through the client's ``iter_executions``, which pages in passes and never yields
  an id twice. This module adds one more guarantee on top: it keeps the ids it has taken, and
  lists again until a whole listing brings no id it has not seen. So an execution that matched
  throughout is never skipped, and one listed twice (or one that fails again after its resume
  and re-enters the FAILED set) is never resumed twice.
- Resumes run concurrently while listing goes on: a bounded queue feeds ``max_concurrency``
  workers, so listing waits when the workers are behind and memory holds ids, not executions.
- Transient errors are retried by the client, within its one ``RetryConfig`` budget per call (no
  second loop around it: one resume against a Core that stays down costs at most
  ``max_attempts`` calls); what is still failing then is an error for that execution alone. An
  authentication error stops the whole run at once: every other call would be refused the same way.

- Resume is checked, never assumed. The released Core answers ``"already_running"`` for a FAILED
  execution (its engine process lives on until Core restarts) and, after a restart, ``"resumed"``
  while nothing runs again. So every ``"resumed"`` or ``"already_running"`` is checked, at least
  ``resume_check_grace`` seconds later: one still FAILED goes to ``not_resumed``. The checks wait
  out their grace side by side (each queued with the moment it is due, in order), so the grace is
  paid once per run, not once per execution. Resumes and checks share the ``max_concurrency``
  bound on calls to Core.
- Checks are read back a page at a time: the checks due are grouped by workflow, and one listing
  of the workflow's RUNNING executions, pages of 100, answers for every check it shows: an
  execution listed as RUNNING left FAILED. A listing is never taken as proof that an execution is
  still FAILED: Core's status filter reads an execution's last stored event, and a resumed engine
  stores none until its step runs again, so a resumed execution lists as FAILED for a while (Core
  release be56c90). A check the listing does not show, a listing that fails, and a group too small
  for a listing to pay are read alone, one status read each (a read that fails goes to
  ``errors``). The choice is made from the numbers: Core's total for the filter at the workflow's
  last listing (its pages) and the share of the checks that listing answered. A listing is sent as soon
  as it costs at most ``LISTING_CALLS_PER_CHECK`` calls per check it should answer; until then the
  checks due wait for more to join them, at most ``MAX_CHECK_HOLD`` seconds past their grace, and
  no longer once no resume is left to answer. So a bulk resume costs about one call per execution
  plus its listings, where reading each back alone cost two.

- With ``on_not_resumed="rerun"`` (HTTP API only, refused before anything is sent over gRPC), an
  execution still FAILED after its check is rerun: a new execution of its workflow with its inputs
  (``client.rerun_execution``). The reruns Core already holds are found once per run (one listing
  of the workflow, one event-log read per execution) and kept, with the ones this run starts, in
  one map, so a second run, a retried task or one whose worker died mid-run finds each rerun
  instead of starting another. A rerun is never counted as resumed: it has its own verdicts,
  ``rerun`` (started by this run) and ``already_rerun`` (found). Its id is taken at once, so the
  listing never hands this run's own reruns back; an execution that is itself a rerun is not
  rerun again (an error naming it).

One case is reported as Core answers it: when a resume reached Core but its answer was lost
(a network error after Core acted), the retry answers ``"already_running"`` and the execution is
counted under ``already_running``, not ``resumed``. Either way it is running again. And one case
cannot be told apart from Core's answers: an execution that really resumed but failed again
within the grace reads FAILED like one that never ran, so it is counted under ``not_resumed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from cerebelum_provider._arguments import (
    check_bool,
    check_int,
    check_on_not_resumed,
    coerce_states,
    positive_seconds,
)
from cerebelum_provider.exceptions import (
    CerebelumAuthError,
    CerebelumError,
    CerebelumTLSError,
    ExecutionNotFoundError,
)
from cerebelum_provider.models import ExecutionState, ExecutionStatus

if TYPE_CHECKING:
    from cerebelum_provider.client import ExecutionClient

T = TypeVar("T")

#: Upper bound on concurrent resumes: more only queues work inside Core.
MAX_CONCURRENCY = 1024
#: Seconds between a resume's answer and the read that checks it, unless told otherwise.
DEFAULT_RESUME_CHECK_GRACE = 1.0
#: Upper bound on that grace: a longer one only delays the check, Core does not need it.
MAX_RESUME_CHECK_GRACE = 300.0
#: The answers after which the execution is read back, since the released Core gives both for
#: a FAILED execution it does not run again.
CHECKED_ANSWERS = ("resumed", "already_running")
#: Core's largest page, the size of every listing that checks resumes.
PAGE_SIZE = 100
#: The state a check lists: a resumed execution runs (over REST the filter also finds executions
#: that sleep or wait for approval).
CHECK_LISTING_STATE = ExecutionState.RUNNING
#: A listing is sent at once when its pages cost at most this many calls per check it should answer.
LISTING_CALLS_PER_CHECK = 0.05
#: Seconds a check due may wait past its grace for more checks to share its listing.
MAX_CHECK_HOLD = 10.0
#: Seconds between two looks at the checks due while they wait for more to join them.
CHECK_REPLAN_SECONDS = 0.1


@dataclass
class BulkResumeSummary:
    """What a bulk resume did; every matched id appears in exactly one list (or in ``errors``).

    ``matched`` counts the distinct executions taken from the listing. ``not_resumed`` holds the
    executions Core answered "resumed" or "already_running" for but that were still FAILED when
    read back after the grace. With ``on_not_resumed="rerun"`` those are rerun instead: ``rerun``
    maps each to the new execution this run started, ``already_rerun`` to the one an earlier run
    started (found, nothing started); neither counts as resumed. In a dry run nothing is started:
    the ids that would be resumed are in ``would_resume``, those that would be rerun if Core does
    not resume them (no rerun yet) in ``would_rerun``, and every other list is empty.
    """

    dry_run: bool = False
    matched: int = 0
    resumed: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    failed_to_resume: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    would_resume: list[str] = field(default_factory=list)
    not_resumed: list[str] = field(default_factory=list)
    rerun: dict[str, str] = field(default_factory=dict)
    already_rerun: dict[str, str] = field(default_factory=dict)
    would_rerun: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when any execution was neither resumed nor rerun (refused by Core, still FAILED, or
        an error)."""
        return bool(self.failed_to_resume or self.not_resumed or self.errors)

    def counts(self) -> dict[str, int]:
        """The number in each outcome, for logs and progress callbacks."""
        return {
            "matched": self.matched,
            "resumed": len(self.resumed),
            "already_running": len(self.already_running),
            "failed_to_resume": len(self.failed_to_resume),
            "errors": len(self.errors),
            "not_resumed": len(self.not_resumed),
            "rerun": len(self.rerun),
            "already_rerun": len(self.already_rerun),
            "would_resume": len(self.would_resume),
            "would_rerun": len(self.would_rerun),
        }

    def describe(self) -> str:
        """One line with every count, e.g. for a task log or an exception message."""
        counts = self.counts()
        if not self.dry_run:
            counts.pop("would_resume")
            counts.pop("would_rerun")
        text = ", ".join(f"{name}={value}" for name, value in counts.items())
        return f"dry run: {text}" if self.dry_run else text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (for XCom): the id lists, ``errors`` by id, ``rerun`` and
        ``already_rerun`` as ``{failed id: rerun id}``, ``matched`` and ``dry_run``."""
        return {
            "matched": self.matched,
            "resumed": list(self.resumed),
            "already_running": list(self.already_running),
            "failed_to_resume": list(self.failed_to_resume),
            "errors": dict(self.errors),
            "not_resumed": list(self.not_resumed),
            "rerun": dict(self.rerun),
            "already_rerun": dict(self.already_rerun),
            "would_resume": list(self.would_resume),
            "would_rerun": list(self.would_rerun),
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True)
class BulkResumeRequest:
    """The checked arguments of one bulk resume (built by :func:`validate_request`)."""

    workflow_name: str | None
    states: tuple[ExecutionState, ...]
    max_executions: int | None
    max_concurrency: int
    skip_completed_steps: bool
    dry_run: bool
    resume_check_grace: float = DEFAULT_RESUME_CHECK_GRACE
    on_not_resumed: str = "fail"


def check_resume_check_grace(value: object, *, field_name: str = "resume_check_grace") -> float:
    """Seconds (a number or timedelta, 0 to MAX_RESUME_CHECK_GRACE) to wait before reading a resume back.

    Raises:
        TypeError: not a number or timedelta.
        ValueError: negative, not finite, or above MAX_RESUME_CHECK_GRACE.
    """
    return positive_seconds(value, field_name, allow_zero=True, maximum=MAX_RESUME_CHECK_GRACE)


def not_resumed_message(
    execution_id: str, answer: str, grace: float, error: dict[str, str] | None = None
) -> str:
    """Why an execution Core answered ``answer`` for counts as not resumed: it is still FAILED."""
    message = (
        f"Cerebelum Core answered {answer!r} for execution {execution_id} but it is still FAILED "
        f"after {grace} s: Core did not resume it (the released Core answers 'already_running' for a "
        "failed execution until it restarts, and 'resumed' after a restart while nothing runs again), "
        "or it failed again within that time"
    )
    if error:
        message += f"; Core's error: {error.get('kind') or 'error'}: {error.get('message') or 'no message'}"
    return message


def rerun_message(
    execution_id: str, rerun_execution_id: str, *, started: bool, workflow_name: str | None = None
) -> str:
    """What a task log says of a rerun (as a warning): never a resume, every step runs again."""
    how = "started" if started else "found (an earlier run started it; nothing started now)"
    workflow = f"workflow {workflow_name!r}" if workflow_name else "its workflow"
    return (
        f"Cerebelum execution {execution_id} was not resumed; its rerun {rerun_execution_id} was {how}: "
        f"a new execution of {workflow} with its inputs as Core stored them, in which every step runs "
        "again, completed ones included"
    )


def validate_request(
    *,
    workflow_name: object = None,
    states: object = (ExecutionState.FAILED,),
    max_executions: object = None,
    max_concurrency: object = 16,
    skip_completed_steps: object = True,
    dry_run: object = False,
    resume_check_grace: object = DEFAULT_RESUME_CHECK_GRACE,
    on_not_resumed: object = "fail",
) -> BulkResumeRequest:
    """Check every argument of a bulk resume before anything is sent.

    Raises:
        TypeError, ValueError: naming the bad argument and what was expected.
    """
    if workflow_name is not None:
        if not isinstance(workflow_name, str):
            raise TypeError(
                "workflow_name must be a string or None, "
                f"got {type(workflow_name).__name__} {workflow_name!r}"
            )
        if not workflow_name.strip():
            # Core filters by "" literally and would match nothing; None is how to say "all workflows".
            raise ValueError("workflow_name must not be empty; pass None to match every workflow")
    return BulkResumeRequest(
        workflow_name=workflow_name,
        states=coerce_states(states, allow_unspecified=False),
        max_executions=None
        if max_executions is None
        else check_int(max_executions, field_name="max_executions", minimum=1),
        max_concurrency=check_int(
            max_concurrency, field_name="max_concurrency", minimum=1, maximum=MAX_CONCURRENCY
        ),
        skip_completed_steps=check_bool(skip_completed_steps, field_name="skip_completed_steps"),
        dry_run=check_bool(dry_run, field_name="dry_run"),
        resume_check_grace=check_resume_check_grace(resume_check_grace),
        on_not_resumed=check_on_not_resumed(on_not_resumed),
    )


async def resume_matching(
    client: ExecutionClient,
    *,
    workflow_name: str | None = None,
    states: object = (ExecutionState.FAILED,),
    max_executions: int | None = None,
    max_concurrency: int = 16,
    skip_completed_steps: bool = True,
    dry_run: bool = False,
    on_progress: Callable[[dict[str, int]], None] | None = None,
    resume_check_grace: float = DEFAULT_RESUME_CHECK_GRACE,
    on_not_resumed: str = "fail",
) -> BulkResumeSummary:
    """Resume every execution in ``states`` (of ``workflow_name``, or of every workflow).

    Args:
        client: an open async ``ExecutionClient``.
        states: one state or several (enum, name or value); default FAILED.
        max_executions: stop taking executions from the listing after this many.
        max_concurrency: calls to Core in flight at once (resumes and the reads that check them).
        dry_run: list only; the ids that would be resumed land in ``would_resume``.
        on_progress: called with :meth:`BulkResumeSummary.counts` after every execution handled
            (and once more at the end); it must be quick, it runs on the event loop.
        resume_check_grace: seconds between a "resumed" or "already_running" answer and the check
            that the execution left FAILED (0: at once; a check may wait up to ``MAX_CHECK_HOLD``
            more to share a listing).
        on_not_resumed: ``"fail"`` (count it under ``not_resumed``) or ``"rerun"`` (rerun it: HTTP
            API only).

    Returns:
        The :class:`BulkResumeSummary`. Refusals and errors are recorded in it, not raised.

    Raises:
        TypeError, ValueError: a bad argument, before anything is sent.
        UnsupportedOperationError: ``on_not_resumed="rerun"`` over gRPC, before anything is sent.
        CerebelumAuthError, CerebelumTLSError: Core refused the credentials; the run stops at once.
        CoreUnavailableError: listing failed after every retry.
    """
    if on_progress is not None and not callable(on_progress):
        raise TypeError(f"on_progress must be callable or None, got {type(on_progress).__name__}")
    request = validate_request(
        workflow_name=workflow_name,
        states=states,
        max_executions=max_executions,
        max_concurrency=max_concurrency,
        skip_completed_steps=skip_completed_steps,
        dry_run=dry_run,
        resume_check_grace=resume_check_grace,
        on_not_resumed=on_not_resumed,
    )
    if request.on_not_resumed == "rerun":
        client.require_http("on_not_resumed='rerun'")
    return await _BulkResume(client, request, on_progress).run()


class _Check:
    """A resume to check: when it falls due, the execution, Core's answer, and its workflow (None:
    not known, when the run matches every workflow and Core's listing did not name it)."""

    __slots__ = ("answer", "due", "execution_id", "workflow")

    def __init__(self, due: float, execution_id: str, answer: str, workflow: str | None) -> None:
        self.due = due
        self.execution_id = execution_id
        self.answer = answer
        self.workflow = workflow


class _BulkResume:
    """One run: a lister feeding a bounded queue, resume workers taking from it, and a checker that
    reads back, a listing at a time, each execution Core said it resumed once its grace is over."""

    def __init__(
        self,
        client: ExecutionClient,
        request: BulkResumeRequest,
        on_progress: Callable[[dict[str, int]], None] | None,
    ) -> None:
        self.client = client
        self.request = request
        self.on_progress = on_progress
        self.summary = BulkResumeSummary(dry_run=request.dry_run)
        # Every id taken from the listing: the at-most-once guarantee lives in this set.
        self.taken: set[str] = set()
        self.queue: asyncio.Queue[tuple[str, str | None]] = asyncio.Queue(maxsize=2 * request.max_concurrency)
        # Checks in the order they fall due: unbounded, so a resume never waits for a grace to
        # pass; it holds the resumes answered and not checked yet.
        self.checks: asyncio.Queue[_Check] = asyncio.Queue()
        # Resumes and checks together never have more calls in flight than max_concurrency.
        self.calls = asyncio.Semaphore(request.max_concurrency)
        # Ids taken and not answered yet; once the listing is over and none is left, no check can
        # come that checks due could wait for.
        self.listing_over = False
        self.unanswered_resumes = 0
        self.resumes_over = asyncio.Event()
        # {workflow: (pages, share of its checks answered)} of its last listing for checks.
        self.check_listings: dict[str | None, tuple[int, float]] = {}
        # {failed id: rerun id}: the reruns Core held when first needed, plus those this run starts.
        self.reruns: dict[str, str] | None = None
        self.reruns_found = asyncio.Lock()

    async def run(self) -> BulkResumeSummary:
        workers = [asyncio.create_task(self._worker()) for _ in range(self.request.max_concurrency)]
        if not self.request.dry_run:
            workers.append(asyncio.create_task(self._checker()))
        lister = asyncio.create_task(self._list_all())
        drained: asyncio.Task[None] | None = None
        try:
            await self._until_done(lister, workers)
            # Listing is over; every id taken is queued, in a worker's hands, or waiting for its check.
            drained = asyncio.create_task(self._drain())
            await self._until_done(drained, workers)
        finally:
            tasks = [lister, *workers] + ([drained] if drained is not None else [])
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._report_progress()
        return self.summary

    async def _drain(self) -> None:
        await self.queue.join()
        # Every resume is answered, so every check it needs is queued by now.
        await self.checks.join()

    @staticmethod
    async def _until_done(task: asyncio.Task[None], workers: list[asyncio.Task[None]]) -> None:
        """Wait for ``task``; raise at once if it or a worker fails (workers only end by failing)."""
        while not task.done():
            done, _ = await asyncio.wait([task, *workers], return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                finished.result()
        task.result()

    async def _list_all(self) -> None:
        """List each state until a full listing brings nothing new, queueing every new id once."""
        try:
            for state in self.request.states:
                while True:
                    # Each page is retried by the client within its budget; a listing that still
                    # fails ends the run (nothing taken so far is lost: its outcomes are recorded).
                    new_ids = await self._list_once(state)
                    if self._limit_reached() or new_ids == 0:
                        break
                if self._limit_reached():
                    return
        finally:
            self.listing_over = True
            self._note_resumes_over()

    async def _list_once(self, state: ExecutionState) -> int:
        new_ids = 0
        async for execution in self.client.iter_executions(
            workflow_name=self.request.workflow_name, status=state
        ):
            if self._limit_reached():
                break
            execution_id = execution.execution_id
            if execution_id in self.taken:
                continue
            self.taken.add(execution_id)
            self.summary.matched += 1
            new_ids += 1
            self.unanswered_resumes += 1
            await self.queue.put(
                (execution_id, self.request.workflow_name or execution.workflow_name or None)
            )
        return new_ids

    def _limit_reached(self) -> bool:
        limit = self.request.max_executions
        return limit is not None and self.summary.matched >= limit

    def _note_resumes_over(self) -> None:
        if self.listing_over and self.unanswered_resumes == 0:
            self.resumes_over.set()

    async def _worker(self) -> None:
        while True:
            execution_id, workflow = await self.queue.get()
            try:
                settled = await self._resume_one(execution_id, workflow)
            finally:
                self.queue.task_done()
                self.unanswered_resumes -= 1
                self._note_resumes_over()
            if settled:
                self._report_progress()

    async def _call_core(self, call: Callable[[], Awaitable[T]]) -> T:
        """One call to Core within the shared bound (the client retries it within its budget)."""
        async with self.calls:
            return await call()

    @staticmethod
    async def _together(calls: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
        """Await every call side by side; the first that raises cancels the others."""
        tasks = [asyncio.ensure_future(call) for call in calls]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _resume_one(self, execution_id: str, workflow: str | None) -> bool:
        """Resume one execution; True when its outcome is recorded, False when it awaits its check."""
        summary = self.summary
        if self.request.dry_run:
            summary.would_resume.append(execution_id)
            if self.request.on_not_resumed == "rerun":
                await self._note_would_rerun(execution_id)
            return True
        try:
            answer = await self._call_core(
                lambda: self.client.resume_execution(
                    execution_id, skip_completed_steps=self.request.skip_completed_steps
                )
            )
        except (CerebelumAuthError, CerebelumTLSError):
            raise
        except CerebelumError as error:
            summary.errors[execution_id] = error.message
            return True
        except (TypeError, ValueError) as error:
            # An id Core listed but the client refuses to send (e.g. empty): one bad entry
            # must not stop the others.
            summary.errors[execution_id] = f"{type(error).__name__}: {error}"
            return True
        if answer in CHECKED_ANSWERS:
            due = asyncio.get_running_loop().time() + self.request.resume_check_grace
            self.checks.put_nowait(_Check(due, execution_id, answer, workflow))
            return False
        if answer == "failed_to_resume":
            summary.failed_to_resume.append(execution_id)
        else:
            summary.errors[execution_id] = f"Core answered an unknown resume status {answer!r}"
        return True

    # Checks --------------------------------------------------------------------------------------

    async def _checker(self) -> None:
        """Check the resumes as they fall due, in batches that share their listings."""
        loop = asyncio.get_running_loop()
        waiting: deque[_Check] = deque()
        while True:
            while not self.checks.empty():
                waiting.append(self.checks.get_nowait())
            if not waiting:
                waiting.append(await self.checks.get())
                continue
            now = loop.time()
            due = [check for check in waiting if check.due <= now]
            if not due:
                await self._pause(waiting[0].due - now)
                continue
            batch = self._checks_to_send(due, now, more_to_come=len(due) < len(waiting))
            if not batch:
                await self._pause(CHECK_REPLAN_SECONDS)
                continue
            sent = {check.execution_id for check in batch}
            waiting = deque(check for check in waiting if check.execution_id not in sent)
            try:
                await self._together(
                    self._check_group(workflow, checks) for workflow, checks in _by_workflow(batch).items()
                )
            finally:
                for _ in batch:
                    self.checks.task_done()
            self._report_progress()

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the last resume is answered meanwhile."""
        if self.resumes_over.is_set():
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.resumes_over.wait(), seconds)

    def _checks_to_send(self, due: list[_Check], now: float, *, more_to_come: bool) -> list[_Check]:
        """The checks due to send now: each workflow's, once its listing is cheap enough per check,
        its oldest has waited ``MAX_CHECK_HOLD`` past its grace, or no more checks can join them."""
        may_wait = more_to_come or not self.resumes_over.is_set()
        batch: list[_Check] = []
        for workflow, checks in _by_workflow(due).items():
            if (
                not may_wait
                or now >= checks[0].due + MAX_CHECK_HOLD
                or not self._listing_may_pay(workflow)
                or self._listing_is_cheap(workflow, len(checks))
            ):
                batch += checks
        return batch

    def _listing_record(self, workflow: str | None) -> tuple[int, float]:
        """The pages of the workflow's listing and the share of its checks it answers (never
        listed: one page, all of them), from its last listing."""
        return self.check_listings.get(workflow, (1, 1.0))

    def _listing_may_pay(self, workflow: str | None) -> bool:
        # Holding checks back for a listing is worth it only where listings answer most of them.
        return self._listing_record(workflow)[1] >= 0.5

    def _listing_is_cheap(self, workflow: str | None, checks: int) -> bool:
        pages, share = self._listing_record(workflow)
        return pages <= LISTING_CALLS_PER_CHECK * checks * share

    def _listing_pays(self, workflow: str | None, checks: int) -> bool:
        """Fewer pages than the reads alone of the checks it should answer."""
        pages, share = self._listing_record(workflow)
        return pages < checks * share

    async def _check_group(self, workflow: str | None, checks: list[_Check]) -> None:
        """Check one workflow's resumes: those its listing shows running by it, the others alone."""
        unanswered = {check.execution_id: check for check in checks}
        settling: list[Coroutine[Any, Any, None]] = []
        if self._listing_pays(workflow, len(unanswered)):
            found = await self._list_for_checks(workflow, unanswered)
            settling += [self._settle(check, still_failed=False) for check in found]
        settling += [self._check_one(check) for check in unanswered.values()]
        await self._together(settling)

    async def _list_for_checks(self, workflow: str | None, unanswered: dict[str, _Check]) -> list[_Check]:
        """Page through the workflow's RUNNING executions, taking out of ``unanswered`` (and
        returning) the checks it shows; pages after the first go ``max_concurrency`` at a time.

        What it does not answer is read alone. A listing that fails is not sent again in this run
        (its checks are read alone); an authentication error stops the run.
        """
        asked = len(unanswered)
        found: list[_Check] = []

        def take(executions: list[ExecutionStatus]) -> None:
            for execution in executions:
                check = unanswered.pop(execution.execution_id, None)
                if check is not None:
                    found.append(check)

        def page(offset: int) -> Coroutine[Any, Any, tuple[list[ExecutionStatus], int, bool]]:
            return self._call_core(
                lambda: self.client.list_executions(
                    workflow_name=workflow, status=CHECK_LISTING_STATE, limit=PAGE_SIZE, offset=offset
                )
            )

        pages = 1
        try:
            executions, total, has_more = await page(0)
            take(executions)
            pages = max(1, math.ceil(total / PAGE_SIZE))
            offsets = list(range(len(executions), total, PAGE_SIZE)) if has_more and executions else []
            wave_size = self.request.max_concurrency
            for start in range(0, len(offsets), wave_size):
                # The pages left would cost more than reading what is left alone.
                if len(offsets) - start >= len(unanswered):
                    break
                wave = offsets[start : start + wave_size]
                for executions, _, _ in await self._together(page(offset) for offset in wave):
                    take(executions)
        except (CerebelumAuthError, CerebelumTLSError):
            raise
        except CerebelumError:
            # Refused (the released Core's gRPC listing crashes on a page that is not empty):
            # its checks are read alone, where their own errors say what Core answered.
            self.check_listings[workflow] = (pages, 0.0)
            return found
        # Smoothed, so a listing that answered none is tried again for a batch large enough.
        self.check_listings[workflow] = (pages, (len(found) + 1) / (asked + 2))
        return found

    async def _check_one(self, check: _Check) -> None:
        """Read the execution back alone: still FAILED means Core's answer did not resume it."""
        execution_id = check.execution_id
        about = f"Core answered {check.answer!r} to the resume, but reading execution {execution_id} back"
        try:
            execution = await self._call_core(lambda: self.client.get_execution_status(execution_id))
        except (CerebelumAuthError, CerebelumTLSError):
            raise
        except ExecutionNotFoundError as error:
            self.summary.errors[execution_id] = f"{about} found no such execution: {error.message}"
            return
        except CerebelumError as error:
            self.summary.errors[execution_id] = f"{about} to check it failed: {error.message}"
            return
        await self._settle(check, still_failed=execution.status is ExecutionState.FAILED)

    async def _settle(self, check: _Check, *, still_failed: bool) -> None:
        """Record a checked resume: resumed or already running, or not resumed (or rerun)."""
        if still_failed:
            if self.request.on_not_resumed == "rerun":
                await self._rerun_one(check.execution_id)
            else:
                self.summary.not_resumed.append(check.execution_id)
        elif check.answer == "resumed":
            self.summary.resumed.append(check.execution_id)
        else:
            self.summary.already_running.append(check.execution_id)

    async def _known_reruns(self) -> dict[str, str]:
        """The reruns Core holds for this run's workflow, listed once per run (under a lock)."""
        async with self.reruns_found:
            if self.reruns is None:
                found = await self._call_core(lambda: self.client.find_reruns(self.request.workflow_name))
                self.reruns = dict(found)
            return self.reruns

    async def _note_would_rerun(self, execution_id: str) -> None:
        try:
            reruns = await self._known_reruns()
        except (CerebelumAuthError, CerebelumTLSError):
            raise
        except CerebelumError as error:
            self.summary.errors[execution_id] = f"finding the reruns Core holds failed: {error.message}"
            return
        if execution_id not in reruns and execution_id not in reruns.values():
            self.summary.would_rerun.append(execution_id)

    async def _rerun_one(self, execution_id: str) -> None:
        """Rerun an execution Core did not resume: found when Core holds its rerun, else started."""
        summary = self.summary
        try:
            reruns = await self._known_reruns()
            rerun = await self._call_core(
                lambda: self.client.rerun_execution(execution_id, known_reruns=reruns)
            )
        except (CerebelumAuthError, CerebelumTLSError):
            raise
        except CerebelumError as error:
            summary.errors[execution_id] = f"Core did not resume it, and rerunning it failed: {error.message}"
            return
        # Taken at once: the listing must never hand this run its own rerun as a new execution.
        self.taken.add(rerun.rerun_execution_id)
        reruns[execution_id] = rerun.rerun_execution_id
        verdict = summary.rerun if rerun.started else summary.already_rerun
        verdict[execution_id] = rerun.rerun_execution_id

    def _report_progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.summary.counts())


def _by_workflow(checks: Iterable[_Check]) -> dict[str | None, list[_Check]]:
    """Checks grouped by workflow, each group in the order they fell due."""
    groups: dict[str | None, list[_Check]] = {}
    for check in checks:
        groups.setdefault(check.workflow, []).append(check)
    return groups
