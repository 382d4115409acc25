"""Faults on demand, applied to every call before it is handled (a failed call changes nothing).

The order a call goes through: counted (and its peer noted), Core's rate limit (REST calls only,
when set), hang, latency, bearer token, the next-N failures, the failure rate. Settings are
changed from the test's thread and read on the server's loop, so they sit behind one lock. Both
faces of the emulator go through :meth:`Faults.admit`:
gRPC calls by their RPC name, REST calls by the name of the RPC that does the same (and
:data:`REST_ONLY_NAMES` for the calls only REST has).
"""

from __future__ import annotations

import asyncio
import hmac
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable

import grpc

#: Names counted for the REST calls that have no gRPC counterpart.
REST_ONLY_NAMES = frozenset(["StopExecution", "ApproveExecution", "GetExecutionEvents"])

#: The message of a call Core's rate limiter refused (the REST face answers it with 429).
RATE_LIMITED = "rate_limit_exceeded"
#: Core's rate-limit window: a calendar minute.
CORE_RATE_LIMIT_WINDOW = 60.0

RPC_NAMES = REST_ONLY_NAMES | frozenset(
    [
        "Register",
        "Heartbeat",
        "Unregister",
        "PollForTask",
        "SubmitResult",
        "SubmitBlueprint",
        "ExecuteWorkflow",
        "GetExecutionStatus",
        "ListExecutions",
        "ResumeExecution",
    ]
)


def _rpc_set(rpcs: Iterable[str] | str | None) -> frozenset[str] | None:
    if rpcs is None:
        return None
    names = frozenset([rpcs]) if isinstance(rpcs, str) else frozenset(rpcs)
    unknown = names - RPC_NAMES
    if unknown:
        raise ValueError(
            f"rpcs {sorted(unknown)} are not WorkerService RPCs or REST call names; "
            f"expected some of {sorted(RPC_NAMES)}"
        )
    return names


def _check_code(code: grpc.StatusCode) -> None:
    if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
        raise ValueError(f"code must be a grpc.StatusCode other than OK, got {code!r}")


class Faults:
    """The fault settings and the call counters of one emulator."""

    def __init__(self, *, latency: float = 0.0, token: str | None = None) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._peers: set[str] = set()
        self._latency = 0.0
        self._latency_rpcs: frozenset[str] | None = None
        self.set_latency(latency)
        self._token = token
        self._hang = False
        self._fail_next = 0
        self._fail_next_code = grpc.StatusCode.UNAVAILABLE
        self._fail_next_rpcs: frozenset[str] | None = None
        self._rate = 0.0
        self._rate_code = grpc.StatusCode.UNAVAILABLE
        self._rate_rpcs: frozenset[str] | None = None
        self._random = random.Random()
        self._rate_limit: int | None = None
        self._rate_window: float | None = CORE_RATE_LIMIT_WINDOW
        self._window_index = -1
        self._window_calls = 0
        self._rate_limited = 0
        self._engine_busy_until = 0.0

    def __repr__(self) -> str:
        # The token never appears: only whether one is required.
        return f"Faults(latency={self._latency}, token_required={self._token is not None}, hang={self._hang})"

    # Settings --------------------------------------------------------------------------------

    def set_latency(self, seconds: float, rpcs: Iterable[str] | str | None = None) -> None:
        """Delay every call (of ``rpcs``, default any) by ``seconds``."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(f"latency must be a number of seconds >= 0, got {seconds!r}")
        with self._lock:
            self._latency, self._latency_rpcs = float(seconds), _rpc_set(rpcs)

    def hang(self, enabled: bool) -> None:
        """Accept calls and never answer them (until the client's deadline ends them)."""
        with self._lock:
            self._hang = bool(enabled)

    def fail_next(
        self,
        n: int,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        rpcs: Iterable[str] | str | None = None,
    ) -> None:
        """Fail the next ``n`` calls (of ``rpcs``, default any) with ``code``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        _check_code(code)
        with self._lock:
            self._fail_next, self._fail_next_code, self._fail_next_rpcs = n, code, _rpc_set(rpcs)

    def set_failure_rate(
        self,
        rate: float,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        rpcs: Iterable[str] | str | None = None,
        seed: int | None = None,
    ) -> None:
        """Fail each call (of ``rpcs``) with probability ``rate``, drawn from a seedable RNG."""
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be a number between 0 and 1, got {rate!r}")
        _check_code(code)
        with self._lock:
            self._rate, self._rate_code, self._rate_rpcs = float(rate), code, _rpc_set(rpcs)
            self._random = random.Random(seed)

    def set_rate_limit(self, limit: int | None, window_seconds: float | None = 60.0) -> None:
        """Core's per-organisation rate limit on its REST API: ``limit`` calls per calendar window of
        ``window_seconds`` (Core: 1,000 a minute), the rest refused with 429 until the window turns.

        None turns it off. Windows are counted on the wall clock, as Core counts calendar minutes.
        ``window_seconds=None`` is one window that never turns (the next ``limit`` calls pass, every
        later one is refused, with Core's ``retry-after: 60``): a test whose wait must be ended by
        its own deadline, never by a window turning at a calendar minute.
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"rate limit must be a whole number of calls >= 1 or None, got {limit!r}")
        if window_seconds is not None and (
            isinstance(window_seconds, bool)
            or not isinstance(window_seconds, (int, float))
            or not math.isfinite(window_seconds)
            or window_seconds <= 0
        ):
            raise ValueError(
                f"rate limit window must be a number of seconds > 0 or None, got {window_seconds!r}"
            )
        with self._lock:
            self._rate_limit = limit
            self._rate_window = None if window_seconds is None else float(window_seconds)
            self._window_index, self._window_calls = -1, 0

    @property
    def rate_limit(self) -> tuple[int, int] | None:
        """``(limit, retry-after seconds)`` of the rate limit in force, or None."""
        with self._lock:
            if self._rate_limit is None:
                return None
            # Core's 429 says retry-after 60, its window's length, whatever is left of the minute.
            window = CORE_RATE_LIMIT_WINDOW if self._rate_window is None else self._rate_window
            return self._rate_limit, math.ceil(window)

    def rate_limited_count(self) -> int:
        """Calls refused by the rate limit (each is counted in :meth:`call_counts` too)."""
        with self._lock:
            return self._rate_limited

    def _over_rate_limit(self) -> bool:
        """Count one call against the rate limit; True when it is over (called with the lock held)."""
        if self._rate_limit is None:
            return False
        window = 0 if self._rate_window is None else int(time.time() // self._rate_window)
        if window != self._window_index:
            self._window_index, self._window_calls = window, 0
        self._window_calls += 1
        if self._window_calls <= self._rate_limit:
            return False
        self._rate_limited += 1
        return True

    def engine_busy(self, seconds: float) -> None:
        """For the next ``seconds``, answer REST status reads with HTTP 500 and Phoenix's bare body,
        as the released Core does while one of its engines is busy past 5 s (0 ends it)."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise ValueError(f"seconds must be a number >= 0, got {seconds!r}")
        with self._lock:
            self._engine_busy_until = time.monotonic() + seconds

    def engine_busy_now(self) -> bool:
        """Whether a status read now finds an engine busy (see :meth:`engine_busy`)."""
        with self._lock:
            return time.monotonic() < self._engine_busy_until

    # Counters --------------------------------------------------------------------------------

    def call_counts(self) -> dict[str, int]:
        """Calls received per RPC name, failed ones included."""
        with self._lock:
            return dict(self._calls)

    def peers(self) -> set[str]:
        """Distinct client connections seen: ``context.peer()`` values and ``http(s)://host:port``."""
        with self._lock:
            return set(self._peers)

    def token_ok(self, authorization: str) -> bool:
        """Whether an ``authorization`` value passes (always, when no token is required)."""
        if self._token is None:
            return True
        return hmac.compare_digest(authorization.encode(), f"Bearer {self._token}".encode())

    # The gate --------------------------------------------------------------------------------

    async def gate(self, rpc: str, context: grpc.aio.ServicerContext) -> None:
        """Apply the faults to one gRPC call; aborts the call (raises) when a fault fires."""
        failure = await self.admit(rpc, context.peer(), _authorization(context))
        if failure is not None:
            await context.abort(*failure)

    async def admit(
        self, rpc: str, peer: str, authorization: str, *, rate_limited: bool = False
    ) -> tuple[grpc.StatusCode, str] | None:
        """Count the call, then hang, wait or pick the failure it gets (None: go on and answer).

        ``rate_limited`` calls (REST) count against the rate limit first: over it, the failure is
        ``(RESOURCE_EXHAUSTED, RATE_LIMITED)`` at once.
        """
        with self._lock:
            self._calls[rpc] += 1
            self._peers.add(peer)
            if rate_limited and self._over_rate_limit():
                return grpc.StatusCode.RESOURCE_EXHAUSTED, RATE_LIMITED
            hang = self._hang
            latency = self._latency if self._latency_rpcs is None or rpc in self._latency_rpcs else 0.0
        if hang:
            # Half-open network: the call is accepted and never answered; cancellation ends it.
            await asyncio.Event().wait()
        if latency:
            await asyncio.sleep(latency)
        return self._pick_failure(rpc, authorization)

    def _pick_failure(self, rpc: str, authorization: str) -> tuple[grpc.StatusCode, str] | None:
        with self._lock:
            if not self.token_ok(authorization):
                return grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token"
            if self._fail_next and (self._fail_next_rpcs is None or rpc in self._fail_next_rpcs):
                self._fail_next -= 1
                return self._fail_next_code, f"injected failure ({self._fail_next_code.name})"
            targeted = self._rate_rpcs is None or rpc in self._rate_rpcs
            if self._rate and targeted and self._random.random() < self._rate:
                return self._rate_code, f"injected random failure ({self._rate_code.name})"
        return None


def _authorization(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "authorization":
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return ""
