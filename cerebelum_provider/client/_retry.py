"""The one retry policy and the one attempt loop of both transports: tenacity, built from the
client's ``RetryConfig``.

Each transport says which failures are transient (``is_retryable``) and how to name one in a log
line (``describe``); how often and how long to wait is decided here, once, and so is the loop
that sends (``send_with_retries`` and its blocking twin). Here too: how long a call refused by
Core's rate limiter waits for the limiter's next window (``until_next_rate_limit_window``).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from cerebelum_provider.client import _deadline
from cerebelum_provider.client._operations import Operation
from cerebelum_provider.client.config import RetryConfig

T = TypeVar("T")
log = logging.getLogger("cerebelum_provider.client")

#: Core's rate limiter counts an organisation's requests per calendar minute (of Core's clock) and
#: refuses the rest with HTTP 429 until the minute turns.
RATE_LIMIT_WINDOW_SECONDS = 60.0
#: How many new rate-limit windows a call refused with 429 after its retries waits for before it
#: fails: enough to carry a burst of thousands of calls (a bulk resume) through, few enough that a
#: call against a Core that keeps refusing fails within about four minutes.
RATE_LIMIT_WINDOWS = 3
#: Seconds added to each such wait, at random: past the minute's turn on a clock a little off Core's,
#: and spread so that the callers waiting do not all come back in the same instant.
RATE_LIMIT_JITTER = (0.5, 3.0)
#: Lines about one Core's failed attempts and rate-limit waits logged per window of this many
#: seconds; the rest are counted and the count logged with the next line.
FAILURE_LOG_WINDOW_SECONDS = 60.0
FAILURE_LINES_PER_WINDOW = 10


class FailureLines:
    """The WARNING lines of one client about its Core's failed attempts and rate-limit waits: up to
    ``FAILURE_LINES_PER_WINDOW`` per window, the rest counted and the count logged with the next line.

    Thousands of waits in one triggerer share a client and fail together when Core blips; a line
    each goes through the supervisor's pipe, which blocks the trigger runner's loop while it is full.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window_start = -math.inf
        self._logged = 0
        self._unlogged = 0

    def warn(self, message: str, *args: object) -> None:
        """Log ``message % args`` at WARNING, unless this window's lines are spent (then count it)."""
        now = time.monotonic()
        with self._lock:
            unlogged_before = 0
            if now - self._window_start >= FAILURE_LOG_WINDOW_SECONDS:
                unlogged_before = self._unlogged
                self._window_start, self._logged, self._unlogged = now, 0, 0
            if self._logged >= FAILURE_LINES_PER_WINDOW:
                self._unlogged += 1
                return
            self._logged += 1
            last_of_window = self._logged == FAILURE_LINES_PER_WINDOW
        if unlogged_before:
            message += f" ({unlogged_before} more such lines were not logged in the window before)"
        if last_of_window:
            message += (
                f"; the next such lines within {FAILURE_LOG_WINDOW_SECONDS:.0f} s of the first are counted, "
                "not logged"
            )
        log.warning(message, *args)


class RetriesSpent(Exception):
    """The last failure of a call, after ``attempts`` tries; the transport maps it to its error."""

    def __init__(self, error: BaseException, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


async def send_with_retries(
    send: Callable[[], Awaitable[T]],
    policy: Callable[[], dict[str, Any]],
    failures: tuple[type[BaseException], ...],
) -> T:
    """``await send()``, retried on ``failures`` by ``policy()``'s rules.

    The first attempt goes out without tenacity: building and running a retry loop costs more
    CPU than the call itself, and thousands of triggers poll through here. A failed first attempt
    goes on in :func:`retry_after`, so the policy is unchanged.

    Raises:
        RetriesSpent: the call still failed (one of ``failures``) when the policy gave up, or the
            caller's deadline passed before the next retry (the failure before it, then).
        _deadline.DeadlinePassed: the deadline passed before the first attempt ``send()`` made.
    """
    try:
        return await send()
    except failures as first_error:
        pending = first_error
    return await retry_after(pending, send, policy, failures)


async def retry_after(
    first_error: BaseException,
    send: Callable[[], Awaitable[T]],
    policy: Callable[[], dict[str, Any]],
    failures: tuple[type[BaseException], ...],
) -> T:
    """Go on with a call whose first attempt, made by the caller, failed with ``first_error``.

    The failure is replayed as attempt 1 of the tenacity loop, so it is judged, logged and waited
    for exactly as if the loop had made that attempt; ``send()`` makes attempts 2 and on. A caller
    that makes its first attempt itself (the gRPC transport) keeps the retry machinery, and the
    objects it allocates, out of every call that succeeds at once.

    Raises:
        RetriesSpent: the call still failed (one of ``failures``) when the policy gave up, or the
            caller's deadline passed before the next retry (the failure before it, then).
    """
    pending: BaseException | None = first_error
    last_failure = first_error
    attempts = 0
    try:
        async for attempt in AsyncRetrying(**policy()):
            with attempt:
                attempts += 1
                if pending is not None:
                    replayed, pending = pending, None
                    raise replayed
                try:
                    result = await send()
                except failures as error:
                    last_failure = error
                    raise
    except failures as error:
        raise RetriesSpent(error, attempts) from None
    except _deadline.DeadlinePassed:
        # The retry the deadline stopped was never sent: the call ends with the failure before it.
        raise RetriesSpent(last_failure, attempts - 1) from None
    return result


def send_with_retries_blocking(
    send: Callable[[], T],
    policy: Callable[[], dict[str, Any]],
    failures: tuple[type[BaseException], ...],
) -> T:
    """The blocking twin of :func:`send_with_retries`.

    Raises:
        RetriesSpent: the call still failed when the policy gave up, or the caller's deadline
            passed before the next retry (the failure before it, then).
        _deadline.DeadlinePassed: the deadline passed before the first attempt ``send()`` made.
    """
    last_failure: BaseException | None = None
    attempts = 0
    try:
        for attempt in Retrying(**policy()):
            with attempt:
                attempts += 1
                try:
                    result = send()
                except failures as error:
                    last_failure = error
                    raise
    except failures as error:
        raise RetriesSpent(error, attempts) from None
    except _deadline.DeadlinePassed:
        if last_failure is None:
            raise
        # The retry the deadline stopped was never sent: the call ends with the failure before it.
        raise RetriesSpent(last_failure, attempts - 1) from None
    return result


def retry_policy(
    config: RetryConfig,
    operation: Operation[Any],
    address: str,
    *,
    is_retryable: Callable[[BaseException], bool],
    describe: Callable[[BaseException], str],
    is_retryable_once_sent: Callable[[BaseException], bool] | None = None,
    lines: FailureLines | None = None,
) -> dict[str, Any]:
    """Keyword arguments for tenacity's ``Retrying``/``AsyncRetrying``.

    Failures for which ``is_retryable`` is true are retried with exponential backoff and jitter
    until ``config.max_attempts`` calls were made; everything else is raised at once. An
    operation that is not idempotent is retried only for failures that ``is_retryable_once_sent``
    (the failure proves the request never reached Core), else it gets exactly one attempt. No
    retry starts after the caller's deadline (``_deadline.calls_end_within``), and no wait outlasts it.
    Each retry is logged at WARNING (operation, address, failure; never headers or metadata) through
    ``lines`` (the client's, so that a fleet of calls failing together logs a few lines, not one each).
    """
    if operation.idempotent:
        retryable = is_retryable
    elif is_retryable_once_sent is not None:
        retryable = is_retryable_once_sent
    else:
        retryable = _never
    max_attempts = config.max_attempts if retryable is not _never else 1
    if lines is None:
        lines = FailureLines()

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        lines.warn(
            "%s to Cerebelum Core at %s failed with %s (attempt %d of %d); retrying in %.2f s",
            operation.name,
            address,
            describe(error) if error is not None else "no error",
            state.attempt_number,
            max_attempts,
            state.upcoming_sleep,
        )

    # initial * multiplier ** (n - 1), capped, plus up to one initial backoff of jitter;
    # composed from the two oldest tenacity waits so that every tenacity >= 8.2 works.
    backoff = wait_exponential(
        multiplier=config.initial_backoff, max=config.max_backoff, exp_base=config.multiplier
    ) + wait_random(0, config.initial_backoff)

    def wait(state: RetryCallState) -> float:
        left = _deadline.remaining()
        return backoff(state) if left is None else max(0.0, min(backoff(state), left))

    return {
        "before_sleep": log_retry,
        "stop": stop_any(stop_after_attempt(max_attempts), _StopAtDeadline()),
        "wait": wait,
        "retry": retry_if_exception(retryable),
        "reraise": True,
    }


def until_next_rate_limit_window(now: float, retry_after: float | None) -> float:
    """Seconds to wait, at epoch ``now``, for Core's next rate-limit window: until the next calendar
    minute but never longer than ``retry_after`` (the refusal's own advice, when it gave one), plus
    ``RATE_LIMIT_JITTER``."""
    wait = RATE_LIMIT_WINDOW_SECONDS - now % RATE_LIMIT_WINDOW_SECONDS
    if retry_after is not None:
        wait = min(wait, retry_after)
    return wait + random.uniform(*RATE_LIMIT_JITTER)


def rate_limit_wait_fits(wait: float) -> bool:
    """Whether a wait of ``wait`` seconds for the next rate-limit window (and one attempt after it)
    ends before the caller's deadline."""
    left = _deadline.remaining()
    return left is None or wait < left


class _StopAtDeadline(stop_base):
    """Stop once the caller's deadline has passed."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        left = _deadline.remaining()
        return left is not None and left <= 0


def _never(error: BaseException) -> bool:
    return False
