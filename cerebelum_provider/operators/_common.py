"""What the operators share: argument checks, transient-error retries and waiting for an execution.

No grpc, protobuf or tenacity import at module level: DAG files import the operators, and
parsing a DAG must not pay for those (issue 6); they load on first use inside ``execute``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk.exceptions import AirflowException

from cerebelum_provider.models import ExecutionState, ExecutionStatus

if TYPE_CHECKING:
    from logging import Logger

T = TypeVar("T")

#: Attempts for one idempotent call made by an operator, on top of the client's own retries.
OPERATOR_ATTEMPTS = 4


def check_seconds(value: object, *, field_name: str, allow_none: bool = False) -> float | None:
    """Seconds as a float from a positive number or timedelta (or None when allowed).

    Raises:
        TypeError: not a number or timedelta.
        ValueError: zero, negative or not finite.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        expected = "a positive number of seconds, a timedelta or None" if allow_none else "a positive number"
        raise TypeError(f"{field_name} must be {expected}, got {type(value).__name__} {value!r}")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{field_name} must be a positive, finite number of seconds, got {value!r}")
    return seconds


def call_with_retries(call: Callable[[], T], *, attempts: int = OPERATOR_ATTEMPTS) -> T:
    """Run an idempotent client call, retrying transient errors once the client's own budget is spent.

    Raises:
        The last error when every attempt failed, or at once when it is not transient.
    """
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

    from cerebelum_provider.bulk import is_transient

    for attempt in Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.5, max=10.0) + wait_random(0, 0.5),
        reraise=True,
    ):
        with attempt:
            return call()
    raise AssertionError("unreachable: tenacity either returns or reraises")


def finish(execution: ExecutionStatus) -> dict[str, Any]:
    """The execution dict of a COMPLETED execution; AirflowException for FAILED (with Core's error)."""
    if execution.status is ExecutionState.FAILED:
        raise AirflowException(failure_message(execution.execution_id, execution.error))
    return execution.to_dict()


def failure_message(execution_id: str, error: dict[str, str] | None) -> str:
    """The message of the task failure for a FAILED execution, with Core's error kind and message."""
    if not error:
        return f"Cerebelum execution {execution_id} failed (Core reported no error details)"
    return (
        f"Cerebelum execution {execution_id} failed: "
        f"{error.get('kind') or 'error'}: {error.get('message') or 'no message'}"
    )


def wait_in_worker(
    client: Any,
    execution_id: str,
    *,
    poll_interval: float,
    timeout: float | None,
    log: Logger,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the execution is COMPLETED or FAILED, logging progress at every check.

    Returns:
        The final execution dict when it completed.

    Raises:
        AirflowException: it failed (Core's error kind and message), or ``timeout`` passed first.
        ExecutionNotFoundError: Core does not know the execution.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        execution = call_with_retries(lambda: client.get_execution_status(execution_id))
        log.info("%s", execution.describe_progress())
        if execution.status.is_terminal:
            return finish(execution)
        if deadline is not None and time.monotonic() + poll_interval > deadline:
            raise AirflowException(
                f"Cerebelum execution {execution_id} did not finish within {timeout:g}s; "
                f"it is still {execution.status.name}"
            )
        sleep(poll_interval)


def trigger_end_time(timeout: float | None) -> float | None:
    """The moment (epoch seconds) a deferred wait gives up, or None to wait without a limit."""
    if timeout is None:
        return None
    return time.time() + timeout


def handle_trigger_event(event: dict[str, Any] | None, *, timeout: float | None) -> dict[str, Any]:
    """The final execution dict from the trigger's event; AirflowException for anything but success.

    The trigger yields ``{"status": success|failure|error|timeout, "execution_id", "state",
    "message", "execution"}``.
    """
    if not event or not isinstance(event, dict):
        raise AirflowException(f"The Cerebelum trigger sent no usable event: {event!r}")
    status = event.get("status")
    execution_id = event.get("execution_id", "?")
    execution = event.get("execution")
    if status == "success":
        return (
            execution
            if execution is not None
            else {"execution_id": execution_id, "status": event.get("state")}
        )
    if status == "failure":
        raise AirflowException(failure_message(execution_id, (execution or {}).get("error")))
    if status == "timeout":
        limit = f" within {timeout:g}s" if timeout is not None else ""
        raise AirflowException(
            f"Cerebelum execution {execution_id} did not finish{limit}; "
            f"last state {event.get('state')}: {event.get('message', '')}"
        )
    raise AirflowException(
        f"Waiting for Cerebelum execution {execution_id} failed: {event.get('message') or event!r}"
    )
