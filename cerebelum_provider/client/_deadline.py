"""The caller's deadline: a time no retry of any client call, and no wait for Core's rate limiter,
runs past.

A wait (a trigger, an operator waiting in its worker) knows when its task must end; the client
knows only its per-attempt ``timeout``. ``calls_end_within(seconds)`` tells every call made inside
it, in this thread or asyncio task (a context variable), when that is. A call's first attempt is
always sent, bounded by the client's ``timeout`` as ever (a wait checks the execution once more at
its deadline, to report its last state); a retry starts only before the deadline and is cut at it,
the waits between retries end at it, and a call refused by Core's rate limiter does not wait for a
window that opens after it.
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from cerebelum_provider.client._operations import Operation
from cerebelum_provider.exceptions import CoreUnavailableError, ErrorCode

# The deadline on the monotonic clock, so a wall-clock step does not move it.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "cerebelum_call_deadline", default=None
)


class DeadlinePassed(Exception):
    """The caller's deadline passed before an attempt could be sent."""


def calls_end_within(seconds: float | None) -> AbstractContextManager[None]:
    """Inside, no client call retries or waits past ``seconds`` from now (negative: the deadline
    has passed, one attempt each); None sets no deadline. An earlier outer deadline still holds.

    Raises:
        ValueError: ``seconds`` is not a finite number.
    """
    if seconds is None:
        # One shared no-op: a trigger without a deadline enters this at every poll.
        return _NO_DEADLINE
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise ValueError(f"seconds must be a finite number of seconds or None, got {seconds!r}")
    return _calls_end_at(time.monotonic() + seconds)


_NO_DEADLINE: AbstractContextManager[None] = nullcontext()


@contextmanager
def _calls_end_at(deadline: float) -> Iterator[None]:
    outer = _deadline.get()
    token = _deadline.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _deadline.reset(token)


@contextmanager
def calls_without_deadline() -> Iterator[None]:
    """Inside, calls run without any caller's deadline: for a call made on behalf of many callers
    (a listing that answers many waits), which the deadline of the one that happened to start it
    must not cut."""
    token = _deadline.set(None)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the caller's deadline (may be negative), or None without one."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def attempt_timeout(timeout: float, attempts_sent: int) -> float:
    """The time the next attempt of a call may take, after ``attempts_sent`` attempts: the
    client's ``timeout`` for the first, :func:`retry_timeout` for a retry.

    Raises:
        DeadlinePassed: a retry, and the caller's deadline has passed: send nothing more.
    """
    return retry_timeout(timeout) if attempts_sent else timeout


def retry_timeout(timeout: float) -> float:
    """The time a retry's attempt may take: the client's ``timeout``, or less when the caller's
    deadline comes first.

    Raises:
        DeadlinePassed: the caller's deadline has passed: send nothing more.
    """
    left = remaining()
    if left is None:
        return timeout
    if left <= 0:
        raise DeadlinePassed("the caller's deadline passed")
    return min(timeout, left)


def ended_note() -> str:
    """What an error's message adds when the caller's deadline, passed, ended the call's retries."""
    left = remaining()
    return "; the caller's deadline ended the call" if left is not None and left <= 0 else ""


def not_sent(operation: Operation[Any], address: str) -> CoreUnavailableError:
    """The error for ``operation`` not sent again because the caller's deadline passed."""
    about = f" about execution {operation.execution_id!r}" if operation.execution_id else ""
    return CoreUnavailableError(
        f"{operation.name}{about} was not retried at Cerebelum Core at {address}: the caller's deadline "
        "had passed",
        code=ErrorCode.DEADLINE_EXCEEDED,
        core_address=address,
        execution_id=operation.execution_id,
    )
