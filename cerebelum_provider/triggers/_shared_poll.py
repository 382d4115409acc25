"""The waits of one triggerer on one Core share their polling: coalesced reads and a request budget.

Every ``CerebelumExecutionTrigger`` in a triggerer's event loop that polls the same shared client
(one Core) registers a :class:`Wait` with that client's :class:`SharedPoller`, and asks it instead
of the client for each poll. The trigger keeps its own schedule (jittered start, sleep-aware
delays, deadline, unavailability backoff); the poller decides how a poll is answered, and when for
a wait a listing answered (at the next page that covers it, see below):

- Waits are grouped by their execution's workflow (once known) and last state. For a group whose
  executions Core can list (running, waiting for approval), one listing (workflow and state
  filters, pages of 100) answers for every wait in it: an execution still listed is still in the
  state its wait last saw, so the wait's previous answer stands; only an execution missing from
  the listing is read alone. A page answers a wait only when it was sent after that wait's
  previous answer, so no wait is answered twice from one observation.
- The choice is made per poll from the numbers: a group is listed only when its pages (Core's
  total for the filter, from the last listing, over 100) at the pace of its fastest wait cost
  fewer than its waits polled alone, a page counted as the status reads it takes as long as (at
  least one: running averages of both). The released Core's list slows as it stores more
  executions: a page of 100 costs about as much as 100 reads at 5,000 running executions and
  4.7x at 10,000 (bench/RESULTS.md, "Real Core"), so past that its waits read alone. Otherwise,
  and for sleeping executions (whose wake-up time only a status read tells), each wait is read
  alone, exactly as before.
- A new wait's first poll joins the listings too: it is filed with the running executions of an
  unknown workflow, and answered by the listing of its workflow that shows it (once another
  listing named its workflow) or by one listing of every workflow's running executions; a listing
  begun up to one interval before the wait started counts, as the wait's first poll falls
  anywhere in its first interval anyway. So N waits that start together on one workflow cost
  about N/100 list pages, not N reads; one missing from the listing (not running) is read alone.
  Its first answer says only that the execution is running (the trigger logs it at DEBUG, not
  INFO: a line per wait through the triggerer's log pipe stalls its loop at thousands of waits):
  the event a wait yields always comes from a status read.
- An execution's workflow is learned from its first status read (gRPC names it), or from a
  listing without a workflow filter or a fresh listing of some workflow that shows it (REST
  statuses do not name it), which moves the wait to its workflow's group.
- A listing that fails sends its waits to read alone (their own errors then drive their outage
  budget and events) and the group is not listed again for one interval. A listing stopped after a
  few pages (Core's total showed the rest costs more than its waits read alone) answers only the
  waits that awaited it; the waits after it decide afresh, as their group may have grown.
- ``request_budget`` (requests a minute to this Core) stretches every wait's interval evenly when
  the waits would ask for more; logged once when it starts to bind. It is also a hard cap
  (:class:`RequestCap`): the list pages and status reads this poller sends never exceed it in any
  60 s, whatever the stretch's estimate of demand missed (thousands of waits starting together).
- A listed group is listed in passes, page after page, one page every (interval x stretch) / pages
  seconds: a pass per stretched interval, its pages spread evenly so the cap stays idle (pages sent
  in bursts met the cap's sliding window and were spread over it anyway). Core lists in execution id
  order, so each page answers at once the waits whose ids its range covers, the page sent after
  their previous answer: one on it is still in the state, one missing from it is read alone. A wait
  a listing answered asks again at once (the trigger does not sleep) and awaits the next page that
  covers it, so a change is seen within one pass, not after the wait's own sleep and another whole
  listing (up to two). Passes follow each other while waits await them. An execution no page of a
  pass covered (the offsets shifted under the listing as executions left) awaits the next pass once,
  then is read alone.

A trigger that ends or is cancelled removes its wait at once (synchronously), so it never delays
the others and leaves nothing behind; a listing in flight is never cancelled with a waiter (each
awaits a future of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import weakref
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from cerebelum_provider.models import ExecutionState, ExecutionStatus, PollAnswer

if TYPE_CHECKING:
    from cerebelum_provider.client import ExecutionClient

log = logging.getLogger(__name__)

#: Core's largest page.
PAGE_SIZE = 100
#: States a listing can answer for: Core lists an execution under them and the wait learns nothing
#: more from a status read of an execution that stays in them.
LISTABLE_STATES = frozenset({ExecutionState.RUNNING, ExecutionState.WAITING_FOR_APPROVAL})
#: How often (seconds) the demand on Core is worked out again for the request budget.
BUDGET_REFRESH_SECONDS = 1.0
#: Weight of the newest duration in the running averages of a status read and of a list page.
DURATION_WEIGHT = 0.2
#: The window (seconds) the request budget holds in: Core counts requests per calendar minute.
BUDGET_WINDOW_SECONDS = 60.0

_pollers: weakref.WeakKeyDictionary[ExecutionClient, SharedPoller] = weakref.WeakKeyDictionary()


def shared_poller(client: ExecutionClient) -> SharedPoller:
    """The poller of ``client`` (one per shared client: one per event loop and Core)."""
    poller = _pollers.get(client)
    if poller is None:
        poller = _pollers[client] = SharedPoller(client)
    return poller


class RequestCap:
    """At most ``limit`` requests reach Core in any ``BUDGET_WINDOW_SECONDS``: the request budget as
    a hard cap.

    Core refuses an organisation's requests past its limit with 429 until the calendar minute turns,
    and the triggerers of one organisation share that limit by the README's rule (``request_budget``
    each). The interval stretch spreads polls under the budget from an estimate of demand, which
    start-up bursts outran (thousands of first polls, listings of every workflow, listings slower
    than their interval); this cap holds whatever the estimate, and a sliding window that holds
    holds in Core's calendar minutes too. It has ``limit`` slots; a request holds one while it is
    sent and answered, and the slot is free again a window after the request ended: a request
    reaches Core between taking its slot and its end, so two requests on one slot arrive a window
    apart, however long the connection pool or the loop delayed them. Requests take slots in the
    order they asked (asyncio's lock queues fairly): a listing asks for one page at a time, so its
    pages and single reads interleave and neither starves. A request cancelled while it waits takes
    no slot. At most ``limit`` times are kept, only of requests that ended within the last window.
    """

    def __init__(
        self,
        limit: int,
        monotonic: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        on_first_wait: Callable[[], None],
    ) -> None:
        self.limit = limit
        self._monotonic, self._sleep, self._on_first_wait = monotonic, sleep, on_first_wait
        #: Slots free now, slots held by a request in flight, and when each slot's last request ended
        #: (oldest first) for the slots that become free a window later.
        self._free = limit
        self._in_flight = 0
        self._cooling: deque[float] = deque()
        self._turn = asyncio.Lock()
        self._returned = asyncio.Event()
        #: Requests that had to wait for their slot (for tests and benchmarks).
        self.waited = 0

    def lower(self, limit: int) -> None:
        """Hold ``limit`` from now on; slots over it are dropped as they come free."""
        self.limit = limit
        while self._free + len(self._cooling) + self._in_flight > limit and (self._free or self._cooling):
            if self._free:
                self._free -= 1
            else:
                self._cooling.pop()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot while the request inside is sent and answered."""
        await self._take()
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._free + len(self._cooling) + self._in_flight < self.limit:
                self._cooling.append(self._monotonic())
            self._returned.set()

    async def _take(self) -> None:
        waited = False
        async with self._turn:
            while True:
                now = self._monotonic()
                while self._cooling and self._cooling[0] + BUDGET_WINDOW_SECONDS <= now:
                    self._cooling.popleft()
                    self._free += 1
                if self._free:
                    self._free -= 1
                    self._in_flight += 1
                    return
                if not waited:
                    waited = True
                    self.waited += 1
                    if self.waited == 1:
                        self._on_first_wait()
                if self._cooling:
                    await self._sleep(self._cooling[0] + BUDGET_WINDOW_SECONDS - now)
                else:
                    # Every slot is held by a request in flight: one ending starts its window.
                    self._returned.clear()
                    await self._returned.wait()


class Wait:
    """One trigger's registration: its execution, pace, and what it last saw."""

    __slots__ = (
        "answered_at",
        "coalesce",
        "execution_id",
        "group",
        "interval",
        "last",
        "workflow",
    )

    def __init__(self, execution_id: str, interval: float, coalesce: bool) -> None:
        self.execution_id = execution_id
        self.interval = interval
        self.coalesce = coalesce
        self.workflow: str | None = None
        self.last: PollAnswer | None = None
        #: Monotonic time after which an observation is news to this wait.
        self.answered_at = -math.inf
        self.group: _Group | None = None


#: What a listing tells a wait whose execution it no longer shows (it left the state: read it).
GONE = -math.inf


class _Listing:
    """What one listing found: the ids Core listed, when it began, Core's total, and whether it went
    through every page."""

    __slots__ = ("complete", "ids", "started_at", "total", "workflows")

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.complete = False
        self.ids: set[str] = set()
        self.workflows: dict[str, str] = {}
        self.total = 0


class _Awaiting:
    """A wait awaiting the page of a listing that covers its execution, sent after ``after``.

    Its future is given when that execution was seen in the group's state (monotonic time the page
    was sent), ``GONE`` (it left the state: read it), or None (listing failed or stopped: read it).
    """

    __slots__ = ("after", "answer", "missed_a_pass", "wait")

    def __init__(self, wait: Wait, after: float, answer: asyncio.Future[float | None]) -> None:
        self.wait, self.after, self.answer = wait, after, answer
        #: Whether a whole pass went by without a page covering it (offsets shifted under it).
        self.missed_a_pass = False


class _Group:
    """The waits on executions of one workflow (None: not known yet) last seen in one state."""

    def __init__(self, workflow: str | None, state: ExecutionState) -> None:
        self.workflow = workflow
        self.state = state
        self.waits: set[Wait] = set()
        #: Waits that may share a listing (their connection's ``coalesce_polling``), and their paces.
        self.sharing = 0
        self.intervals: Counter[float] = Counter()
        #: Polls a second those waits ask for when each polls alone.
        self.rate_alone = 0.0
        #: Polls a second of the waits that always read alone.
        self.rate_never_listed = 0.0
        #: Core's total for the group's filter at the last listing (None: never listed).
        self.total: int | None = None
        self.listing: _Listing | None = None
        self.in_flight: asyncio.Task[_Listing | None] | None = None
        #: The waits awaiting a page of the listing in flight, each with a future of its own.
        self.awaiting: list[_Awaiting] = []
        #: When the next page may be sent: pages are spread evenly over the stretched interval.
        self.next_page_at = -math.inf
        self.off_until = -math.inf

    def add(self, wait: Wait) -> None:
        self.waits.add(wait)
        wait.group = self
        if not wait.coalesce:
            self.rate_never_listed += 1.0 / wait.interval
            return
        self.sharing += 1
        self.intervals[wait.interval] += 1
        self.rate_alone += 1.0 / wait.interval

    def remove(self, wait: Wait) -> None:
        self.waits.discard(wait)
        wait.group = None
        if not wait.coalesce:
            self.rate_never_listed = max(0.0, self.rate_never_listed - 1.0 / wait.interval)
            return
        self.sharing -= 1
        self.intervals[wait.interval] -= 1
        if self.intervals[wait.interval] <= 0:
            del self.intervals[wait.interval]
        self.rate_alone = max(0.0, self.rate_alone - 1.0 / wait.interval) if self.sharing else 0.0

    @property
    def pages(self) -> int:
        """Pages one listing takes: Core's total when known, else the waits themselves."""
        known = self.sharing if self.total is None else max(self.total, 1)
        return math.ceil(known / PAGE_SIZE)

    @property
    def rate_listed(self) -> float:
        """Requests a second when listed at the pace of its fastest wait."""
        return self.pages / min(self.intervals) if self.intervals else 0.0

    def listed_for_free(self, after: float) -> bool:
        """Whether a listing answers a wait last answered at ``after`` without a new one: the last
        listing began after it, or one is in flight (its pages, or the next pass it leads to, which
        begins only if listing still pays)."""
        return self.in_flight is not None or (self.listing is not None and self.listing.started_at > after)

    def worth_listing(self, now: float, page_cost: float = 1.0) -> bool:
        """Whether listing costs less than reading alone, a page counted as ``page_cost`` reads."""
        return (
            self.state in LISTABLE_STATES
            and self.sharing > 1
            and now >= self.off_until
            and self.rate_listed * page_cost < self.rate_alone
        )


class SharedPoller:
    """Answers the polls of every wait on one client's Core (see the module docstring)."""

    def __init__(self, client: ExecutionClient) -> None:
        self._client = client
        self._groups: dict[tuple[str | None, ExecutionState | None], _Group] = {}
        self._budget: float | None = None
        self._stretch = 1.0
        self._stretch_at = -math.inf
        self._budget_logged = False
        self._cap: RequestCap | None = None
        #: When the reads of executions a listing no longer showed were sent, over the last window:
        #: one per change, which no stretch of the interval makes fewer (at most the cap's worth).
        self._change_reads: deque[float] = deque()
        #: Running averages (seconds) of a status read and of a list page, once one was answered.
        self._read_seconds: float | None = None
        self._page_seconds: float | None = None
        #: Requests sent to Core by this poller, by kind (for tests and benchmarks).
        self.requests: Counter[str] = Counter()

    # Seams for tests that drive a virtual clock.
    @staticmethod
    def _monotonic() -> float:
        return time.monotonic()

    @staticmethod
    async def _sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)

    # Registration ------------------------------------------------------------------------------

    def add(self, execution_id: str, interval: float, *, coalesce: bool = True) -> Wait:
        """Register a wait; its first poll may join a listing begun up to one interval before now."""
        wait = Wait(execution_id, interval, coalesce)
        wait.answered_at = self._monotonic() - interval
        return wait

    def remove(self, wait: Wait) -> None:
        """Forget a wait (it ended or was cancelled); synchronous, so it cannot be interrupted."""
        group = wait.group
        if group is not None:
            group.remove(wait)
            self._drop_if_idle(group)

    @property
    def waits(self) -> int:
        """Waits registered that have polled at least once."""
        return sum(len(group.waits) for group in self._groups.values())

    @property
    def listings_in_flight(self) -> int:
        return sum(1 for group in self._groups.values() if group.in_flight is not None)

    def set_budget(self, requests_per_minute: float | None) -> None:
        """Keep this Core's polls under ``requests_per_minute`` (the smallest asked for wins)."""
        if requests_per_minute is None:
            return
        if self._budget is None or requests_per_minute < self._budget:
            self._budget = float(requests_per_minute)
            self._stretch_at = -math.inf
            limit = max(1, math.floor(requests_per_minute))
            if self._cap is None:
                self._cap = RequestCap(limit, self._monotonic, self._sleep, self._log_cap_binds)
            else:
                self._cap.lower(limit)

    @property
    def cap(self) -> RequestCap | None:
        """The request budget's hard cap (None: no budget set)."""
        return self._cap

    # Polling -----------------------------------------------------------------------------------

    async def poll(self, wait: Wait, *, read_alone: bool = False) -> tuple[PollAnswer, bool]:
        """The wait's next answer, and whether a listing gave it (the wait's previous answer, still
        true) rather than a status read.

        Raises:
            The errors of ``ExecutionClient.poll_execution`` (a failed listing is not raised: the
            wait is then read alone).
        """
        # A wait can move to its workflow's group while it waits for a listing (REST): ask again.
        missed = False
        for _ in range(3):
            if read_alone or not wait.coalesce:
                break
            if wait.group is None:
                # A new wait: filed with the running executions of a workflow not known yet.
                self._file(wait, ExecutionState.RUNNING)
            group = wait.group
            if group is None:
                break
            if wait.workflow is None:
                group = self._learn_workflow(wait, group)
            # A listing already made (or on its way) answers for free; a new one must pay.
            if not group.listed_for_free(wait.answered_at) and not group.worth_listing(
                self._monotonic(), self.page_cost()
            ):
                break
            seen = await self._seen(group, wait)
            if seen is not None and seen != GONE:
                wait.answered_at = seen
                if wait.last is None:
                    wait.last = _listed_answer(wait.execution_id, group)
                    wait.workflow = wait.workflow or group.workflow
                return wait.last, True
            missed = seen == GONE
            if wait.group is group:
                break
        if missed:
            self._change_reads.append(self._monotonic())
        async with self._slot():
            began = time.perf_counter()
            answer = await self._client.poll_execution(wait.execution_id)
            self._read_seconds = _averaged(self._read_seconds, time.perf_counter() - began)
        self.requests["status"] += 1
        self._record(wait, answer, self._monotonic())
        return answer, False

    def page_cost(self) -> float:
        """A list page's cost in status reads: how many reads take as long (at least 1, a request)."""
        if not self._read_seconds or self._page_seconds is None:
            return 1.0
        return max(1.0, self._page_seconds / self._read_seconds)

    def interval_stretch(self) -> float:
        """The factor every wait's interval is stretched by to stay within the request budget."""
        if self._budget is None:
            return 1.0
        now = self._monotonic()
        if now - self._stretch_at >= BUDGET_REFRESH_SECONDS:
            self._stretch_at = now
            while self._change_reads and self._change_reads[0] + BUDGET_WINDOW_SECONDS <= now:
                self._change_reads.popleft()
            demand = 60.0 * sum(self._group_rate(group, now) for group in self._groups.values())
            # The reads of executions that changed come whatever the interval: the polls it paces
            # get the rest of the budget, so the cap binds only on bursts (binding, it spreads a
            # listing's pages over the window, and detection waits for a listing's last page).
            change_reads = len(self._change_reads)
            self._stretch = max(1.0, demand / max(1.0, self._budget - change_reads))
            if self._stretch > 1.0 and not self._budget_logged:
                self._budget_logged = True
                log.warning(
                    "Waits on Cerebelum Core at %s would ask for %.0f requests a minute, over the request "
                    "budget of %.0f: every wait's poll interval is stretched %.2fx",
                    self._client.address,
                    demand + change_reads,
                    self._budget,
                    self._stretch,
                )
        return self._stretch

    # Inside ------------------------------------------------------------------------------------

    def _slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Where a request to Core is sent: within the request budget's cap, when one is set."""
        return contextlib.nullcontext() if self._cap is None else self._cap.slot()

    def _log_cap_binds(self) -> None:
        log.warning(
            "Waits on Cerebelum Core at %s reached the request budget of %.0f requests in 60 s: "
            "requests over it wait for their turn (logged once)",
            self._client.address,
            self._budget,
        )

    def _group_rate(self, group: _Group, now: float) -> float:
        if group.state is ExecutionState.SLEEPING:
            # A sleeping execution is read once near its wake-up, not every interval.
            return 0.0
        shared = group.rate_listed if group.worth_listing(now, self.page_cost()) else group.rate_alone
        return shared + group.rate_never_listed

    def _learn_workflow(self, wait: Wait, group: _Group) -> _Group:
        """The group of a wait whose workflow is not known yet (REST): its workflow's, when the last
        listing of some workflow showed its execution (an execution's workflow never changes)."""
        for other in list(self._groups.values()):
            if (
                other.workflow is not None
                and other.listing is not None
                and wait.execution_id in other.listing.ids
            ):
                wait.workflow = other.workflow
                self._file(wait, group.state)
                return wait.group or group
        return group

    def _record(self, wait: Wait, answer: PollAnswer, now: float) -> None:
        """File the wait under its execution's workflow and state after a status read."""
        if wait.last is None:
            # gRPC statuses name the workflow; the first answer is converted whole anyway (logged).
            wait.workflow = answer.status().workflow_name or None
        wait.last, wait.answered_at = answer, now
        self._file(wait, answer.state)

    def _file(self, wait: Wait, state: ExecutionState) -> None:
        key = (wait.workflow, state)
        group = wait.group
        if group is not None and (group.workflow, group.state) == key:
            return
        if group is not None:
            group.remove(wait)
            self._drop_if_idle(group)
        target = self._groups.get(key)
        if target is None:
            target = self._groups[key] = _Group(wait.workflow, state)
        target.add(wait)

    def _drop_if_idle(self, group: _Group) -> None:
        key = (group.workflow, group.state)
        if not group.waits and group.in_flight is None and self._groups.get(key) is group:
            del self._groups[key]

    async def _seen(self, group: _Group, wait: Wait) -> float | None:
        """When a listing of ``group`` begun or sent after the wait's last answer saw its execution in
        the group's state: the last whole listing, the page of the pass in flight that covers it, or
        of a new pass; ``GONE`` when it no longer showed it, None when listing failed or stopped."""
        after = wait.answered_at
        listing = group.listing
        if listing is not None and listing.started_at > after:
            return listing.started_at if wait.execution_id in listing.ids else GONE
        if group.in_flight is None:
            key = (group.workflow, group.state)
            if self._monotonic() < group.off_until or self._groups.get(key) is not group:
                # Not listed for now, or its waits have all moved on while this one waited.
                return None
            self._start_pass(group)
        # A future of this wait's own, which the pass completes: a cancelled wait cancels only it.
        # Cheaper than ``asyncio.shield`` (a future, two closures and their callbacks per waiter):
        # thousands of waits await the passes, and what they keep alive meanwhile brings the next
        # garbage collection closer (bench/RESULTS.md, "A smooth loop without gc.freeze()").
        answer: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        group.awaiting.append(_Awaiting(wait, after, answer))
        return await answer

    def _start_pass(self, group: _Group) -> None:
        group.in_flight = asyncio.get_running_loop().create_task(
            self._list(group, self._monotonic()),
            name=f"cerebelum-shared-listing {group.workflow!r} {group.state.name}",
        )
        # Retrieved here, so an error no waiter saw (the loop closing) logs no stray line.
        group.in_flight.add_done_callback(_retrieve)

    def _page_spacing(self, group: _Group) -> float:
        """Seconds between two pages of ``group``: a pass per stretched interval of its fastest wait."""
        if not group.intervals:
            return 0.0
        return min(group.intervals) * self.interval_stretch() / group.pages

    async def _list(self, group: _Group, started_at: float) -> _Listing | None:
        from cerebelum_provider.client import calls_without_deadline

        # The task copied the context of the wait that started it (or of the pass before it), with
        # that wait's deadline: a pass answers every wait of its group, the passes after it too.
        with calls_without_deadline():
            return await self._pass(group, started_at)

    async def _pass(self, group: _Group, started_at: float) -> _Listing | None:
        listing = _Listing(started_at)
        failed = False
        try:
            offset = 0
            while True:
                pause = group.next_page_at - self._monotonic()
                if pause > 0:
                    await self._sleep(pause)
                async with self._slot():
                    sent_at = self._monotonic()
                    began = time.perf_counter()
                    # Ids and workflows only: converting whole statuses cost the client 5x the CPU
                    # over gRPC.
                    executions, total, has_more = await self._client.list_execution_ids(
                        workflow_name=group.workflow, status=group.state, limit=PAGE_SIZE, offset=offset
                    )
                    self._page_seconds = _averaged(self._page_seconds, time.perf_counter() - began)
                self.requests["list"] += 1
                listing.total = group.total = total
                group.next_page_at = sent_at + self._page_spacing(group)
                page = set()
                for execution_id, workflow_name in executions:
                    page.add(execution_id)
                    if group.workflow is None and workflow_name:
                        listing.workflows[execution_id] = workflow_name
                listing.ids |= page
                last_page = not has_more or not executions
                if executions or not offset:
                    # The first page covers every id up to its last, the last one every id from its
                    # first; an empty last page (the set shrank under the offsets) covers nothing.
                    first_id = min(page) if offset else None
                    last_id = None if last_page else max(page)
                    _answer_covered(group, page, sent_at, first_id, last_id)
                offset += len(executions)
                if last_page:
                    listing.complete = True
                    break
                # Core's total can show the listing costs more than its waits read alone: what was
                # listed so far still answers for its executions, the others read alone.
                if not group.worth_listing(self._monotonic(), self.page_cost()):
                    break
        except Exception as error:  # noqa: BLE001 (logged; its waits read alone, and their errors count)
            failed = True
            # One interval without listing.
            group.off_until = self._monotonic() + (min(group.intervals) if group.intervals else 0.0)
            log.warning(
                "Listing %s executions%s on Cerebelum Core at %s failed (%s: %s): their waits read "
                "their executions one by one for an interval",
                group.state.name,
                f" of workflow {group.workflow!r}" if group.workflow else "",
                self._client.address,
                type(error).__name__,
                error,
            )
        else:
            # Only a whole listing answers the waits that come after it: one stopped after a few
            # pages would send every later wait not on them to read alone for an interval, though
            # the group may have grown enough to be listed again.
            if listing.complete:
                group.listing = listing
            if listing.workflows:
                self._learn_workflows(group, listing)
        finally:
            group.in_flight = None
            awaiting, group.awaiting = group.awaiting, []
            next_pass = []
            for entry in awaiting:
                if entry.answer.done():
                    # Its wait was cancelled meanwhile.
                    continue
                if failed:
                    entry.answer.set_result(None)
                elif not listing.complete or entry.wait.group is not group:
                    # Stopped, or the wait moved to its workflow's group: it decides afresh.
                    seen = entry.after < started_at and entry.wait.execution_id in listing.ids
                    entry.answer.set_result(started_at if seen else None)
                elif entry.after < started_at and entry.missed_a_pass:
                    # Two passes went by without a page covering it (Core's order not the one
                    # assumed here, or offsets shifting twice): whether the listing showed it.
                    entry.answer.set_result(started_at if entry.wait.execution_id in listing.ids else GONE)
                else:
                    # Its page went by before it asked, or the offsets shifted past it: the next pass.
                    entry.missed_a_pass = entry.after < started_at
                    next_pass.append(entry)
            if next_pass:
                listed = self._groups.get((group.workflow, group.state)) is group
                if listed and group.worth_listing(self._monotonic(), self.page_cost()):
                    group.awaiting = next_pass
                    self._start_pass(group)
                else:
                    for entry in next_pass:
                        entry.answer.set_result(None)
            self._drop_if_idle(group)
        return None if failed else listing

    def _learn_workflows(self, group: _Group, listing: _Listing) -> None:
        """Move the waits of a listing without a workflow filter to their workflows' groups, which
        keep that listing as their last when it is newer: it shows every execution of theirs that
        was in its state (so new waits on them find their workflow, and their answer, in it)."""
        for wait in list(group.waits):
            workflow = listing.workflows.get(wait.execution_id)
            if workflow is not None:
                wait.workflow = workflow
                self._file(wait, group.state)
                target = wait.group
                if (
                    target is not None
                    and listing.complete
                    and (target.listing is None or target.listing.started_at < listing.started_at)
                ):
                    target.listing = listing


def _answer_covered(
    group: _Group, page: set[str], sent_at: float, first_id: str | None, last_id: str | None
) -> None:
    """Answer the waits whose execution ids one page's range covers (None: open ended), the page
    sent after their previous answer.

    Core lists in execution id order (contract, "ListExecutions"), so a page is a slice of that
    order as Core read it: an execution within the slice's range but not on it had left the group's
    state, one on it had not. Should Core's order ever differ from Python's string order, a wait
    answered too early only reads its execution alone, and one never covered is read after two
    passes."""
    waiting = []
    for entry in group.awaiting:
        if entry.answer.done():
            continue
        execution_id = entry.wait.execution_id
        if (
            entry.after < sent_at
            and (first_id is None or first_id <= execution_id)
            and (last_id is None or execution_id <= last_id)
        ):
            entry.answer.set_result(sent_at if execution_id in page else GONE)
        else:
            waiting.append(entry)
    group.awaiting = waiting


def _averaged(average: float | None, seconds: float) -> float:
    return seconds if average is None else average + DURATION_WEIGHT * (seconds - average)


def _listed_answer(execution_id: str, group: _Group) -> PollAnswer:
    """A new wait's first answer from a listing: its execution is in the group's state, no more
    is known (logged at DEBUG only; every event comes from a status read)."""

    def status() -> ExecutionStatus:
        return ExecutionStatus(
            execution_id=execution_id,
            workflow_name=group.workflow or "",
            status=group.state,
            started_at=None,
            completed_at=None,
            current_step_index=0,
            total_steps=0,
            current_step_name="",
            progress_percentage=0.0,
        )

    return PollAnswer(group.state, None, status)


def _retrieve(task: asyncio.Task[_Listing | None]) -> None:
    if not task.cancelled():
        task.exception()
