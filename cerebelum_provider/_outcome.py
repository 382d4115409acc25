"""The one place that turns what Core said into a task's outcome, for the sensor and every operator.

Two doors lead here: a trigger's event (deferred waits) and an error raised by a client call in
the worker. Both follow the same rules:

- an answer that asking again cannot change (unknown execution, refused token, failed TLS
  handshake, Core crashing on the call, a call the connection's API lacks, an address that
  answers the other API, a resume that left
  the execution FAILED, an invalid connection) fails the task without Airflow's retries
  (``AirflowFailException``);
- a bad argument, found once templates are rendered (an empty execution id), fails the task
  without retries too: it renders the same on a retry (``task_arguments``);
- Core unreachable (``CoreUnavailableError``) is raised as it is: Airflow's retries apply (the
  waits first ride an outage out for ``unavailable_timeout``: ``cerebelum_provider._outage``);
- a failed execution fails the task with Core's error kind and message: the caller says whether
  that is final (a sensor: the execution will not change by itself) or worth a retry (the
  execute operator's retry resumes it);
- a deadline fails the task with the execution's last state (the caller gives the exception).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from cerebelum_provider import exceptions
from cerebelum_provider.triggers.event import INVALID_CONNECTION, EventStatus, ExecutionTriggerEvent

#: Errors after which asking again gets the same answer.
FINAL_ERRORS: tuple[type[exceptions.CerebelumError], ...] = (
    exceptions.ExecutionNotFoundError,
    exceptions.CerebelumAuthError,
    exceptions.CerebelumTLSError,
    exceptions.CoreInternalError,
    exceptions.UnsupportedOperationError,
    exceptions.RerunRefusedError,
    exceptions.ExecutionNotResumedError,
    exceptions.CoreAPIMismatchError,
)
_FINAL_ERROR_TYPES = frozenset({cls.__name__ for cls in FINAL_ERRORS} | {INVALID_CONNECTION})
_ERRORS_BY_NAME: dict[str, type[exceptions.CerebelumError]] = {
    cls.__name__: cls
    for cls in (
        exceptions.CoreUnavailableError,
        exceptions.CerebelumRPCError,
        exceptions.RequestRefusedError,
        exceptions.WorkflowStartError,
    )
}


@contextmanager
def task_errors() -> Iterator[None]:
    """Inside, a final error from Core fails the task without retries; others pass unchanged."""
    try:
        yield
    except FINAL_ERRORS as error:
        raise AirflowFailException(error.message) from error


@contextmanager
def task_arguments() -> Iterator[None]:
    """Inside, an argument check that fails (TypeError, ValueError) fails the task without retries."""
    try:
        yield
    except (TypeError, ValueError) as error:
        raise AirflowFailException(str(error)) from error


def task_outcome(
    payload: object,
    *,
    failure_is_final: bool,
    timeout_error: type[BaseException] = AirflowException,
) -> dict[str, Any]:
    """The task's outcome for a ``CerebelumExecutionTrigger`` event.

    Returns:
        The execution dict the event carries, on success.

    Raises:
        AirflowFailException: a final error; a failed execution when ``failure_is_final``.
        AirflowException: a failed execution otherwise; an event that is not one.
        timeout_error: the deadline passed (the message names the execution and its last state).
        CoreUnavailableError (or another retryable ``CerebelumError``): as the trigger reported it.
    """
    try:
        event = ExecutionTriggerEvent.from_payload(payload)
    except (TypeError, ValueError) as error:
        raise AirflowException(str(error)) from None
    if event.status is EventStatus.SUCCESS:
        return event.execution or {"execution_id": event.execution_id, "status": event.state}
    if event.status is EventStatus.FAILURE:
        raise (AirflowFailException if failure_is_final else AirflowException)(event.message)
    if event.status is EventStatus.TIMEOUT:
        raise timeout_error(event.message)
    if event.error_type in _FINAL_ERROR_TYPES:
        raise AirflowFailException(event.message)
    error_class = _ERRORS_BY_NAME.get(event.error_type or "", exceptions.CerebelumError)
    raise error_class(event.message, core_address=event.core_address, execution_id=event.execution_id)
