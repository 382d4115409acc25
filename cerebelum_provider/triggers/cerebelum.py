"""``CerebelumExecutionTrigger``: wait in the triggerer until an execution reaches a final state.

Thousands of these run in one triggerer event loop, so the trigger never blocks the loop, polls
through the one client the hook shares per loop (one HTTP/2 connection), starts polling at a random
point of its first interval (so triggers created together do not poll in step), and sleeps through
an execution's SLEEPING phase instead of polling it every interval. It yields exactly one event.

The event is an ``ExecutionTriggerEvent`` (``cerebelum_provider.triggers.event``), yielded as its
JSON-safe payload; the last status seen travels as ``ExecutionStatus.to_xcom()`` (step outputs
only with ``include_outputs``, bounded in size).
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from cerebelum_provider._arguments import (
    DEFAULT_CONN_ID,
    check_bool,
    check_conn_id,
    check_disjoint_states,
    check_execution_id,
    coerce_states,
    positive_seconds,
    state_values,
)
from cerebelum_provider._outage import DEFAULT_UNAVAILABLE_TIMEOUT, Outage
from cerebelum_provider.exceptions import CerebelumError, CerebelumTLSError, CoreUnavailableError
from cerebelum_provider.models import ExecutionState, ExecutionStatus, PollAnswer
from cerebelum_provider.triggers._gc import freeze_gc_once_if_configured
from cerebelum_provider.triggers._shared_poll import SharedPoller, Wait, shared_poller
from cerebelum_provider.triggers.event import INVALID_CONNECTION, EventStatus, ExecutionTriggerEvent
from cerebelum_provider.triggers.execution_events import CerebelumExecutionEventTrigger

__all__ = ["CerebelumExecutionEventTrigger", "CerebelumExecutionTrigger"]

DEFAULT_SUCCESS_STATES = (ExecutionState.COMPLETED.value,)
DEFAULT_FAILURE_STATES = (ExecutionState.FAILED.value,)
#: The first wait after a transient failure is min(poll_interval, this); it doubles each time.
UNAVAILABLE_FIRST_BACKOFF = 1.0
#: The wait between attempts while Core is unreachable never exceeds max(poll_interval, this).
UNAVAILABLE_MAX_BACKOFF = 30.0


class CerebelumExecutionTrigger(BaseTrigger):
    """Fire once when a Cerebelum execution reaches a success or failure state, or the deadline.

    Args:
        execution_id: the execution to watch.
        cerebelum_conn_id: the Airflow connection to Core (only its id is serialized).
        poll_interval: seconds between status queries while the execution moves; the first query
            comes at a random point within the first interval (never after ``end_time``).
        success_states: states that end the wait with ``"success"`` (enum, name or value).
        failure_states: states that end the wait with ``"failure"``; disjoint from success_states.
        end_time: absolute deadline (epoch seconds); when passed with the execution still not
            final, the event is ``"timeout"``. Absolute, so a restarted trigger keeps it.
            None waits without limit.
        max_sleep_wait: longest single wait, in seconds, while the execution sleeps.
        unavailable_timeout: how long, in seconds, Core may stay unreachable (consecutive
            transient failures, counted from the start of the first) before the event is
            ``"error"`` saying since when (UTC) and at which address; 15 minutes by default
            (``DEFAULT_UNAVAILABLE_TIMEOUT``); None means until ``end_time``.
        unavailable_since: when (epoch seconds) the task found Core unreachable before it
            deferred: the outage is counted from then.
        stop_on_kill: when a user kills the deferred task (mark failed, clear; Airflow 3.3+
            calls ``on_kill``), stop the execution over Core's HTTP API; over gRPC, which cannot
            stop one, log a warning naming it. Only for an execution the task itself started.
        include_outputs: carry the step outputs in the event (bounded in size); without it the
            event carries ids, states, progress and Core's error only.

    Raises:
        TypeError, ValueError: an argument is invalid (checked here, before anything runs).
    """

    def __init__(
        self,
        execution_id: str,
        cerebelum_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 10.0,
        success_states: Iterable[ExecutionState | str] = DEFAULT_SUCCESS_STATES,
        failure_states: Iterable[ExecutionState | str] = DEFAULT_FAILURE_STATES,
        end_time: float | None = None,
        max_sleep_wait: float = 300.0,
        unavailable_timeout: float | None = DEFAULT_UNAVAILABLE_TIMEOUT,
        stop_on_kill: bool = False,
        include_outputs: bool = False,
        unavailable_since: float | None = None,
    ) -> None:
        super().__init__()
        self.execution_id = check_execution_id(execution_id)
        self.cerebelum_conn_id = check_conn_id(cerebelum_conn_id)
        self.poll_interval = positive_seconds(poll_interval, "poll_interval")
        self.success_states = state_values(coerce_states(success_states, "success_states"))
        self.failure_states = state_values(coerce_states(failure_states, "failure_states"))
        check_disjoint_states(self.success_states, self.failure_states)
        if end_time is not None and (
            isinstance(end_time, bool)
            or not isinstance(end_time, (int, float))
            or not math.isfinite(end_time)
        ):
            raise ValueError(f"end_time must be epoch seconds (a number) or None, got {end_time!r}")
        self.end_time = float(end_time) if end_time is not None else None
        self.max_sleep_wait = positive_seconds(max_sleep_wait, "max_sleep_wait")
        self.unavailable_timeout = positive_seconds(
            unavailable_timeout, "unavailable_timeout", allow_none=True
        )
        self.stop_on_kill = check_bool(stop_on_kill, field_name="stop_on_kill")
        self.include_outputs = check_bool(include_outputs, field_name="include_outputs")
        self.unavailable_since = (
            None if unavailable_since is None else positive_seconds(unavailable_since, "unavailable_since")
        )

    def __repr__(self) -> str:
        return (
            f"CerebelumExecutionTrigger(execution_id={self.execution_id!r}, "
            f"cerebelum_conn_id={self.cerebelum_conn_id!r}, poll_interval={self.poll_interval})"
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and exactly the ``__init__`` arguments; holds no secret."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "execution_id": self.execution_id,
                "cerebelum_conn_id": self.cerebelum_conn_id,
                "poll_interval": self.poll_interval,
                "success_states": list(self.success_states),
                "failure_states": list(self.failure_states),
                "end_time": self.end_time,
                "max_sleep_wait": self.max_sleep_wait,
                "unavailable_timeout": self.unavailable_timeout,
                "stop_on_kill": self.stop_on_kill,
                "include_outputs": self.include_outputs,
                "unavailable_since": self.unavailable_since,
            },
        )

    # Seams for tests that drive a virtual clock; production uses the real ones.
    @staticmethod
    def _now() -> float:
        return time.time()

    @staticmethod
    def _monotonic() -> float:
        return time.monotonic()

    @staticmethod
    def _sleep(seconds: float) -> Awaitable[None]:
        # asyncio.sleep's own coroutine, not one wrapping it: one object less held across each sleep.
        return asyncio.sleep(seconds)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll Core until the execution is final or a deadline passes; yield exactly one event."""
        freeze_gc_once_if_configured()
        yield await self._watch()

    async def on_kill(self) -> None:
        """A user killed the deferred task: stop the execution it started (``stop_on_kill``)."""
        if not self.stop_on_kill:
            return
        from cerebelum_provider.hooks.cerebelum import CerebelumHook

        await CerebelumHook(self.cerebelum_conn_id).astop_own_execution(self.execution_id, self.log)

    async def _watch(self) -> TriggerEvent:
        from cerebelum_provider.hooks.cerebelum import CerebelumHook

        hook = CerebelumHook(self.cerebelum_conn_id)
        try:
            settings = await hook.aget_settings()
            client = hook.shared_async_client(settings)
        except ValueError as error:
            return self._event(
                "error", f"Invalid Cerebelum connection: {error}", error_type=INVALID_CONNECTION
            )
        except Exception as error:  # noqa: BLE001 (the lookup failed: missing connection, secrets backend)
            message = f"Cannot read connection {self.cerebelum_conn_id!r}: {type(error).__name__}: {error}"
            return self._event("error", message, error_type=INVALID_CONNECTION)
        # Triggers created together (a triggerer restart, a large mapped sensor) would otherwise all
        # poll in the same instant, every interval: start each at a random point of its first
        # interval, never past the deadline (after the lookup, so a bad connection is reported at
        # once). The sensor and the operators check the execution once before they defer, so this
        # delays no answer a user is waiting for.
        await self._sleep(self._cap(random.uniform(0.0, self.poll_interval), self.end_time))
        poller = shared_poller(client)
        poller.set_budget(settings.request_budget)
        wait = poller.add(self.execution_id, self.poll_interval, coalesce=settings.coalesce_polling)
        try:
            return await self._poll_until_final(poller, wait, client.address)
        finally:
            # Synchronous: a cancelled trigger (task killed, triggerer moved) leaves no wait behind.
            poller.remove(wait)

    async def _poll_until_final(self, poller: SharedPoller, wait: Wait, address: str) -> TriggerEvent:
        from cerebelum_provider.client import calls_end_within

        # The last answer, converted whole only when an event or a log line needs it: most polls
        # only learn that the execution is still running (ExecutionClient.poll_execution).
        last: PollAnswer | None = None
        outage = Outage(self.unavailable_timeout, monotonic=self._monotonic, wall_clock=self._now)
        if self.unavailable_since is not None:
            outage.started_earlier(self.unavailable_since)
        while True:
            outage.attempt()
            try:
                # No retry and no wait for a rate-limit window outlasts the task's deadline.
                left = None if self.end_time is None else self.end_time - self._now()
                with calls_end_within(left):
                    answer, listed = await self._poll_by_deadline(poller, wait, left)
                    if listed and self._past_deadline():
                        # A timeout event carries the execution as Core shows it now, as it always has.
                        answer, listed = await poller.poll(wait, read_alone=True)
            except CerebelumTLSError as error:
                # A certificate that failed the handshake fails it again: no retry.
                message = f"TLS handshake with Cerebelum Core at {address} failed: {error}"
                return self._event("error", message, _whole(last), error=error, address=address)
            except CoreUnavailableError as error:
                outage.failed(error)
                if outage.exhausted or self._past_deadline():
                    message = f"{outage.gave_up(address, self.execution_id)}: {error}"
                    return self._event("error", message, _whole(last), error=error, address=address)
                backoff = self._unavailable_backoff(outage.failures)
                remaining = outage.remaining
                if remaining is not None:
                    backoff = min(backoff, remaining)
                backoff = self._cap(backoff, self.end_time)
                self.log.warning("%s (%s); next try in %.1fs", outage.describe(address), error, backoff)
                await self._sleep(backoff)
                continue
            except CerebelumError as error:
                # Not found, auth refused, any other RPC error: asking again would get the same answer.
                where = "" if address in str(error) else f" at {address}"
                message = f"Cannot watch Cerebelum execution {self.execution_id}{where}: {error}"
                return self._event("error", message, _whole(last), error=error, address=address)
            outage.ended()
            if last is None and listed:
                # A listing only says the execution is running; at thousands of waits starting
                # together a line each fills the supervisor's log pipe and blocks the runner's loop.
                self.log.debug("%s", answer.status().describe_progress())
            elif last is None or last.state is not answer.state:
                self.log.info("%s", answer.status().describe_progress())
            last = answer
            final = self._final_event(answer, address)
            if final is not None:
                return final
            if listed:
                # The poller paces its listings (a pass per stretched interval): the wait awaits the
                # next page that covers its execution, so a change is seen within one pass. Its own
                # sleep on top, out of step with the pages, saw a change up to two passes late.
                continue
            delay = self._next_poll_delay(answer) * poller.interval_stretch()
            await self._sleep(self._cap(delay, self.end_time))

    async def _poll_by_deadline(
        self, poller: SharedPoller, wait: Wait, left: float | None
    ) -> tuple[PollAnswer, bool]:
        """The poller's next answer; a wait for a listing's page ends at the deadline, which then
        reads the execution alone (the timeout event carries it as Core shows it then)."""
        if left is None or left <= 0:
            return await poller.poll(wait, read_alone=self._past_deadline())
        if sys.version_info >= (3, 11):
            deadline = asyncio.timeout(left)
            try:
                async with deadline:
                    return await poller.poll(wait)
            except TimeoutError:
                if not deadline.expired():
                    raise
        else:
            try:
                return await asyncio.wait_for(poller.poll(wait), left)
            except asyncio.TimeoutError:
                pass
        return await poller.poll(wait, read_alone=True)

    def _final_event(self, answer: PollAnswer, address: str) -> TriggerEvent | None:
        """The event that ends the wait for this answer (success, failure, timeout), or None."""
        state = answer.state.value
        if state in self.success_states:
            return self._event(
                "success", f"Execution {self.execution_id} reached {state}", answer.status(), address=address
            )
        if state in self.failure_states:
            status = answer.status()
            return self._event("failure", status.failure_message(), status, address=address)
        if self._past_deadline():
            status = answer.status()
            message = (
                f"Cerebelum execution {self.execution_id} did not finish by the deadline; it is still "
                f"{status.status.name} ({status.describe_progress()})"
            )
            return self._event("timeout", message, status, address=address)
        return None

    def _past_deadline(self) -> bool:
        return self.end_time is not None and self._now() >= self.end_time

    def _unavailable_backoff(self, failures: int) -> float:
        """Wait before the next try after ``failures`` transient failures in a row (doubling, capped)."""
        first = min(self.poll_interval, UNAVAILABLE_FIRST_BACKOFF)
        doublings = min(failures - 1, 32)  # bounded: a days-long outage must not overflow the float
        return min(first * 2**doublings, max(self.poll_interval, UNAVAILABLE_MAX_BACKOFF))

    def _next_poll_delay(self, answer: PollAnswer) -> float:
        """Seconds until the next query: the poll interval, or close to the wake-up of a sleep.

        While the execution sleeps for longer than one interval, wait until just before it wakes
        (at most ``max_sleep_wait``, at least one interval): the query then still finds it asleep
        with less than one interval left, and the next regular poll sees it awake within one
        interval of waking.
        """
        if answer.state is not ExecutionState.SLEEPING or answer.sleep_remaining_ms is None:
            return self.poll_interval
        remaining = answer.sleep_remaining_ms / 1000.0
        if remaining <= self.poll_interval:
            return self.poll_interval
        margin = self.poll_interval / 2
        # Never wait less than one interval, even when max_sleep_wait is set below it.
        return max(min(remaining - margin, self.max_sleep_wait), self.poll_interval)

    def _cap(self, delay: float, deadline: float | None) -> float:
        """``delay``, shortened so the wait ends at ``deadline`` (never negative)."""
        if deadline is None:
            return delay
        return max(0.0, min(delay, deadline - self._now()))

    def _event(
        self,
        status: str,
        message: str,
        execution: ExecutionStatus | None = None,
        *,
        error: BaseException | None = None,
        error_type: str | None = None,
        address: str | None = None,
    ) -> TriggerEvent:
        if status == "error":
            self.log.error("%s", message)
        event = ExecutionTriggerEvent(
            status=EventStatus(status),
            execution_id=self.execution_id,
            message=message,
            state=execution.status.value if execution is not None else None,
            execution=execution.to_xcom(include_outputs=self.include_outputs)
            if execution is not None
            else None,
            error_type=error_type or (type(error).__name__ if error is not None else None),
            core_address=address,
        )
        return TriggerEvent(event.to_payload())


def _whole(answer: PollAnswer | None) -> ExecutionStatus | None:
    return answer.status() if answer is not None else None
