"""What the operators share: argument checks, transient-error retries, a checked resume, deadlines
and waiting for an execution.

No grpc, protobuf or tenacity import at module level: DAG files import the operators, and
parsing a DAG must not pay for those; they load on first use inside ``execute``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from airflow.sdk import conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from cerebelum_provider._arguments import check_bool, check_conn_id, check_on_not_resumed
from cerebelum_provider._outage import DEFAULT_UNAVAILABLE_TIMEOUT, Outage
from cerebelum_provider._outcome import FINAL_ERRORS, task_arguments, task_errors
from cerebelum_provider.bulk import CHECKED_ANSWERS, not_resumed_message, rerun_message
from cerebelum_provider.exceptions import CerebelumError, CoreUnavailableError, ExecutionNotResumedError
from cerebelum_provider.models import ExecutionState, ExecutionStatus, Rerun

if TYPE_CHECKING:
    from cerebelum_provider.client import SyncExecutionClient
    from cerebelum_provider.hooks.cerebelum import CerebelumHook


class Logger(Protocol):
    """What the helpers log with: an operator's ``self.log`` (Airflow's logger) or a stdlib logger."""

    def info(self, event: str, *args: Any) -> Any: ...

    def warning(self, event: str, *args: Any) -> Any: ...


#: How long an operator waits for an execution when told nothing else: 7 days, as Airflow's sensors.
DEFAULT_WAIT_TIMEOUT = 7 * 24 * 3600.0
#: Extra time the scheduler grants a deferred task beyond its own deadline, so the trigger's own
#: "timeout" event (naming the execution and its last state) wins over Airflow's generic one.
DEFERRAL_TIMEOUT_GRACE = timedelta(seconds=60)


def deferral_timeout(end_time: float) -> timedelta:
    """``defer(timeout=...)`` for a trigger whose deadline is ``end_time`` (epoch seconds): the time
    left until then, plus ``DEFERRAL_TIMEOUT_GRACE``."""
    return timedelta(seconds=max(0.0, end_time - time.time())) + DEFERRAL_TIMEOUT_GRACE


def task_hook(cerebelum_conn_id: object) -> CerebelumHook:
    """The hook of a task (operator or sensor) for its rendered ``cerebelum_conn_id``; a bad id
    fails the task without retries."""
    from cerebelum_provider.hooks.cerebelum import CerebelumHook

    with task_arguments():
        return CerebelumHook(cerebelum_conn_id=check_conn_id(cerebelum_conn_id))


def resolve_deferrable(deferrable: object) -> bool:
    """``deferrable`` as a checked bool; None means ``[operators] default_deferrable`` (read now).

    Raises:
        TypeError: not True, False or None.
    """
    if deferrable is None:
        deferrable = conf.getboolean("operators", "default_deferrable", fallback=False)
    return check_bool(deferrable, field_name="deferrable")


class ExecutionWaitTimeout(AirflowException):
    """A wait in the worker outlasted its limit (the message names the execution and its last state)."""


def finish(execution: ExecutionStatus, *, include_outputs: bool = False) -> dict[str, Any]:
    """The XCom dict of a COMPLETED execution; AirflowException for FAILED (with Core's error).

    A failed execution is worth Airflow's retry: the execute operator's retry resumes it.
    """
    if execution.status is ExecutionState.FAILED:
        raise AirflowException(execution.failure_message())
    return execution.to_xcom(include_outputs=include_outputs)


#: The verdict of a resume of an execution that had already completed: nothing was resumed.
ALREADY_COMPLETED = "already_completed"


@dataclass(frozen=True)
class CheckedResume:
    """What a checked resume did: the verdict (Core's answer, or ``"already_completed"``), and the
    rerun started or found when Core did not resume the execution and ``on_not_resumed="rerun"``."""

    answer: str
    rerun: Rerun | None = None


def resume_checked(
    client: SyncExecutionClient,
    execution_id: str,
    *,
    skip_completed_steps: bool,
    grace: float,
    log: Logger,
    on_not_resumed: str = "fail",
) -> CheckedResume:
    """Resume an execution and check what became of it; when it stayed FAILED, fail or rerun it.

    ``"resumed"`` and ``"already_running"`` are read back after ``grace`` seconds: the released
    Core gives both for a FAILED execution it runs nothing again for. An execution that was
    already COMPLETED gets the verdict ``"already_completed"`` (Core answers "failed_to_resume" or
    "already_running" for it, and nothing runs). With ``on_not_resumed="rerun"`` an execution still
    FAILED is rerun (``client.rerun_execution``: found when an earlier try started it, else
    started), with a warning that every step runs again; a connection to Core's gRPC API is refused
    before anything is sent (the rerun needs the event log).

    Raises:
        AirflowFailException: what a retry would not change: Core refused the resume of an
            execution that did not complete, the execution is still FAILED
            (``on_not_resumed="fail"``), Core does not know it or answered something unknown, a
            refused token, TLS, a Core crash, a rerun over gRPC, an execution that is itself a rerun.
        AirflowException: the read-back failed for a reason worth a retry (Core unreachable).
    """
    on_not_resumed = check_on_not_resumed(on_not_resumed)
    with task_errors():
        if on_not_resumed == "rerun":
            client.require_http("on_not_resumed='rerun'", execution_id)
        core_answer = client.resume_execution(execution_id, skip_completed_steps=skip_completed_steps)
        if core_answer != "failed_to_resume" and core_answer not in CHECKED_ANSWERS:
            raise ExecutionNotResumedError(
                f"Cerebelum Core at {client.address} answered an unknown resume status {core_answer!r} "
                f"for execution {execution_id}"
            )
    answer = str(core_answer)  # Core's word as a plain str: XCom values stay JSON
    log.info("Cerebelum execution %s: Core answered %r to the resume", execution_id, answer)
    if answer in CHECKED_ANSWERS and grace > 0:
        time.sleep(grace)
    refused = (
        f"Cerebelum Core at {client.address} refused to resume execution {execution_id} "
        "(failed_to_resume: it is unknown, or cannot be rebuilt)"
    )
    try:
        execution = client.get_execution_status(execution_id)
    except CerebelumError as error:
        if answer == "failed_to_resume":
            with task_errors():
                raise ExecutionNotResumedError(
                    f"{refused}; reading it back failed: {error.message}"
                ) from None
        final = isinstance(error, FINAL_ERRORS)
        raise (AirflowFailException if final else AirflowException)(
            f"Cerebelum Core answered {answer!r} for execution {execution_id}, but reading it back "
            f"to check that it left FAILED failed: {error.message}"
        ) from None
    if execution.status is ExecutionState.COMPLETED and answer != "resumed":
        log.info(
            "Cerebelum execution %s was already COMPLETED: nothing was resumed (Core answered %r)",
            execution_id,
            answer,
        )
        return CheckedResume(ALREADY_COMPLETED)
    if answer == "failed_to_resume":
        with task_errors():
            raise ExecutionNotResumedError(f"{refused}; it is {execution.status.name}")
    if execution.status is ExecutionState.FAILED:
        message = not_resumed_message(execution_id, answer, grace, execution.error)
        if on_not_resumed == "fail":
            with task_errors():
                raise ExecutionNotResumedError(message)
        log.warning("%s; rerunning it (on_not_resumed='rerun')", message)
        with task_errors():
            rerun = client.rerun_execution(execution_id)
        log.warning(
            "%s",
            rerun_message(
                rerun.execution_id,
                rerun.rerun_execution_id,
                started=rerun.started,
                workflow_name=rerun.workflow_name,
            ),
        )
        return CheckedResume(answer, rerun)
    log.info("Cerebelum execution %s is %s after the resume", execution_id, execution.status.name)
    return CheckedResume(answer)


def wait_limit(timeout: float, execution_timeout: timedelta | None) -> float:
    """Seconds a wait may last: the operator's ``timeout``, or the task's ``execution_timeout`` when
    shorter. Airflow does not apply ``execution_timeout`` to a deferred task by itself."""
    if execution_timeout is None:
        return timeout
    return min(timeout, execution_timeout.total_seconds())


def check_once(
    client: SyncExecutionClient, execution_id: str, outage: Outage, log: Logger
) -> ExecutionStatus:
    """One status check of a wait, counted by ``outage``; logs the execution's progress line.

    Raises:
        CoreUnavailableError: Core unreachable (counted as a failed attempt of ``outage``).
        AirflowFailException: Core does not know the execution (or another final error).
    """
    outage.attempt()
    try:
        with task_errors():
            execution = client.get_execution_status(execution_id)
    except CoreUnavailableError as error:
        outage.failed(error)
        raise
    outage.ended()
    log.info("%s", execution.describe_progress())
    return execution


def wait_in_worker(
    client: SyncExecutionClient,
    execution_id: str,
    *,
    poll_interval: float,
    timeout: float | None,
    log: Logger,
    include_outputs: bool = False,
    unavailable_timeout: float | None = DEFAULT_UNAVAILABLE_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the execution is COMPLETED or FAILED, logging progress at every check.

    Core unreachable is ridden out for ``unavailable_timeout`` seconds (None: until ``timeout``).

    Returns:
        The final execution dict when it completed.

    Raises:
        AirflowException: it failed (Core's error kind and message), or ``timeout`` passed first.
        AirflowFailException: Core does not know the execution (or another final error).
        CoreUnavailableError: Core unreachable for longer than ``unavailable_timeout`` (or until
            ``timeout``); the message says since when and at which address.
    """
    from cerebelum_provider.client import calls_end_within

    deadline = None if timeout is None else time.monotonic() + timeout
    outage = Outage(unavailable_timeout)
    while True:
        try:
            with calls_end_within(None if deadline is None else deadline - time.monotonic()):
                execution = check_once(client, execution_id, outage, log)
        except CoreUnavailableError as error:
            left = None if deadline is None else deadline - time.monotonic()
            if outage.exhausted or (left is not None and left <= 0):
                raise CoreUnavailableError(
                    f"{outage.gave_up(client.address, execution_id)}: {error.message}",
                    core_address=client.address,
                    execution_id=execution_id,
                ) from error
            pause = min(delay for delay in (poll_interval, outage.remaining, left) if delay is not None)
            log.warning("%s (%s); next try in %.1fs", outage.describe(client.address), error.message, pause)
            sleep(pause)
            continue
        if execution.status.is_terminal:
            return finish(execution, include_outputs=include_outputs)
        if deadline is not None and time.monotonic() + poll_interval > deadline:
            raise ExecutionWaitTimeout(
                f"Cerebelum execution {execution_id} did not finish within {timeout:g}s; "
                f"it is still {execution.status.name} ({execution.describe_progress()})"
            )
        sleep(poll_interval)
