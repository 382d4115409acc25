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
from typing import Any, Protocol

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from cerebelum_provider._arguments import check_on_not_resumed
from cerebelum_provider._outcome import FINAL_ERRORS, task_errors
from cerebelum_provider.bulk import CHECKED_ANSWERS, not_resumed_message, rerun_message
from cerebelum_provider.models import ExecutionState, ExecutionStatus, Rerun


class Logger(Protocol):
    """What the helpers log with: an operator's ``self.log`` (Airflow's logger) or a stdlib logger."""

    def info(self, event: str, *args: Any) -> Any: ...

    def warning(self, event: str, *args: Any) -> Any: ...


#: How long an operator waits for an execution when told nothing else: 7 days, as Airflow's sensors.
DEFAULT_TIMEOUT = 7 * 24 * 3600.0
#: Extra time the scheduler grants a deferred task beyond its own deadline, so the trigger's own
#: "timeout" event (naming the execution and its last state) wins over Airflow's generic one.
DEFERRAL_TIMEOUT_GRACE = 60.0


class ExecutionWaitTimeout(AirflowException):
    """A wait in the worker outlasted its limit (the message names the execution and its last state)."""


def finish(execution: ExecutionStatus, *, include_outputs: bool = False) -> dict[str, Any]:
    """The XCom dict of a COMPLETED execution; AirflowException for FAILED (with Core's error).

    A failed execution is worth Airflow's retry: the execute operator's retry resumes it.
    """
    if execution.status is ExecutionState.FAILED:
        raise AirflowException(execution.failure_message())
    return execution.to_xcom(include_outputs=include_outputs)


@dataclass(frozen=True)
class CheckedResume:
    """What a checked resume did: Core's answer (its word), and the rerun started or found when
    Core did not resume the execution and ``on_not_resumed="rerun"``."""

    answer: str
    rerun: Rerun | None = None


def resume_checked(
    client: Any,
    execution_id: str,
    *,
    skip_completed_steps: bool,
    grace: float,
    log: Logger,
    on_not_resumed: str = "fail",
) -> CheckedResume:
    """Resume an execution and check that it left FAILED; when it did not, fail or rerun it.

    ``"resumed"`` and ``"already_running"`` are read back after ``grace`` seconds: the released
    Core gives both for a FAILED execution it runs nothing again for. With
    ``on_not_resumed="rerun"`` an execution still FAILED is rerun (``client.rerun_execution``: found
    when an earlier try started it, else started), with a warning that every step runs again; a
    connection to Core's gRPC API is refused before anything is sent (the rerun needs the event log).

    Raises:
        AirflowException: Core refused (``failed_to_resume``), answered something unknown, the
            execution is still FAILED (``on_not_resumed="fail"``), or the check could not be read.
        AirflowFailException: a final error (refused token, TLS, unknown execution, Core crash,
            a rerun over gRPC, an execution that is itself a rerun).
    """
    from cerebelum_provider.exceptions import CerebelumError

    on_not_resumed = check_on_not_resumed(on_not_resumed)
    with task_errors():
        if on_not_resumed == "rerun":
            client.require_http("on_not_resumed='rerun'", execution_id)
        answer = client.resume_execution(execution_id, skip_completed_steps=skip_completed_steps)
    if answer == "failed_to_resume":
        raise AirflowException(
            f"Cerebelum Core at {client.address} refused to resume execution {execution_id} "
            "(failed_to_resume: it is unknown, already completed, or cannot be rebuilt)"
        )
    if answer not in CHECKED_ANSWERS:
        raise AirflowException(f"Cerebelum Core answered an unknown resume status {answer!r}")
    log.info("Cerebelum execution %s: %s", execution_id, answer)
    if grace > 0:
        time.sleep(grace)
    try:
        execution = client.get_execution_status(execution_id)
    except CerebelumError as error:
        final = isinstance(error, FINAL_ERRORS)
        raise (AirflowFailException if final else AirflowException)(
            f"Cerebelum Core answered {answer!r} for execution {execution_id}, but reading it back "
            f"to check that it left FAILED failed: {error.message}"
        ) from None
    answer = str(answer)  # Core's word as a plain str: XCom values stay JSON
    if execution.status is ExecutionState.FAILED:
        message = not_resumed_message(execution_id, answer, grace, execution.error)
        if on_not_resumed == "fail":
            raise AirflowException(message)
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


def wait_in_worker(
    client: Any,
    execution_id: str,
    *,
    poll_interval: float,
    timeout: float | None,
    log: Logger,
    include_outputs: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the execution is COMPLETED or FAILED, logging progress at every check.

    Returns:
        The final execution dict when it completed.

    Raises:
        AirflowException: it failed (Core's error kind and message), or ``timeout`` passed first.
        AirflowFailException: Core does not know the execution (or another final error).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with task_errors():
            execution = client.get_execution_status(execution_id)
        log.info("%s", execution.describe_progress())
        if execution.status.is_terminal:
            return finish(execution, include_outputs=include_outputs)
        if deadline is not None and time.monotonic() + poll_interval > deadline:
            raise ExecutionWaitTimeout(
                f"Cerebelum execution {execution_id} did not finish within {timeout:g}s; "
                f"it is still {execution.status.name} ({execution.describe_progress()})"
            )
        sleep(poll_interval)
