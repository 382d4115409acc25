"""How long Core may stay unreachable before a wait gives up, counted the same way by every wait.

The sensor (poke mode), the operators' waits in the worker and the trigger all count an outage
with :class:`Outage`: from the start of the first attempt that failed (so the client's own retries
of that attempt count too) on the monotonic clock, and say since when in UTC, and whether Core was
unreachable, busy or rate-limiting at the last failed attempt. Pure Python.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

from cerebelum_provider.exceptions import CerebelumError, CoreBusyError, ErrorCode

#: Seconds Core may stay unreachable during a wait before the task fails (15 minutes): long
#: enough to ride out a restart or a short network outage, short enough that a wrong address
#: fails within the hour rather than at the wait's own timeout (7 days by default).
DEFAULT_UNAVAILABLE_TIMEOUT = 15 * 60.0


_UNREACHABLE = "unreachable"
_BUSY = "busy"
_RATE_LIMITING = "rate-limiting this client"


def _how_core_failed(error: BaseException | None) -> str:
    """What a failed check found Core to be: busy (``CoreBusyError``: an engine busy past 5 s),
    rate-limiting (RESOURCE_EXHAUSTED: HTTP 429), else unreachable."""
    if isinstance(error, CoreBusyError):
        return _BUSY
    if isinstance(error, CerebelumError) and error.code is ErrorCode.RESOURCE_EXHAUSTED:
        return _RATE_LIMITING
    return _UNREACHABLE


class Outage:
    """A run of consecutive attempts that found Core unreachable.

    Call :meth:`attempt` before each attempt, :meth:`failed` after one that found Core
    unreachable and :meth:`ended` after one that got an answer. ``budget`` None never gives up.
    """

    def __init__(
        self,
        budget: float | None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.budget = budget
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._attempt_started: tuple[float, float] = (0.0, 0.0)
        self._since: tuple[float, float] | None = None
        self.failures = 0
        self._how = _UNREACHABLE

    def attempt(self) -> None:
        """Note when the next attempt starts (it is the outage's start if it fails first)."""
        if self._since is None:
            self._attempt_started = (self._monotonic(), self._wall_clock())

    def failed(self, error: BaseException | None = None) -> None:
        """The attempt found Core unreachable, or busy or rate-limiting when ``error`` says so."""
        if self._since is None:
            self._since = self._attempt_started
        self.failures += 1
        self._how = _how_core_failed(error)

    def ended(self) -> None:
        """Core answered: the outage, if any, is over."""
        self._since = None
        self.failures = 0

    def started_earlier(self, since_epoch: float) -> None:
        """The outage began at ``since_epoch`` (epoch seconds, in another process: before a deferral)."""
        elapsed = max(0.0, self._wall_clock() - since_epoch)
        self._since = (self._monotonic() - elapsed, since_epoch)

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    @property
    def since_epoch(self) -> float | None:
        """When the outage began (epoch seconds), or None when Core answered last."""
        return self._since[1] if self._since is not None else None

    @property
    def elapsed(self) -> float:
        """Seconds since the first failed attempt began (0 when Core answered last)."""
        return self._monotonic() - self._since[0] if self._since is not None else 0.0

    @property
    def remaining(self) -> float | None:
        """Seconds left of the budget (never below 0), or None without a budget."""
        if self.budget is None:
            return None
        return max(0.0, self.budget - self.elapsed)

    @property
    def exhausted(self) -> bool:
        """True once Core has been unreachable for the whole budget."""
        return self.remaining == 0.0 and self.ongoing

    def describe(self, address: str) -> str:
        """E.g. ``Cerebelum Core at ADDRESS unreachable since 2026-01-31 12:00:00 UTC (912s, 40 failed
        checks)``; ``busy`` or ``rate-limiting this client`` instead of ``unreachable`` when the last
        failed check found it so."""
        since = self.since_epoch if self.since_epoch is not None else self._wall_clock()
        when = datetime.fromtimestamp(since, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        checks = "1 failed check" if self.failures == 1 else f"{self.failures} failed checks"
        return f"Cerebelum Core at {address} {self._how} since {when} ({self.elapsed:.0f}s, {checks})"

    def gave_up(self, address: str, execution_id: str) -> str:
        """Why a wait on ``execution_id`` ends because Core is unreachable: since when, and whether
        the outage outlasted ``unavailable_timeout`` (else the wait's own deadline passed)."""
        message = f"{self.describe(address)} while waiting for execution {execution_id}"
        if self.exhausted:
            message += f", longer than unavailable_timeout ({self.budget:g}s)"
        return message
