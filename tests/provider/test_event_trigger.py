"""CerebelumExecutionEventTrigger against the emulator, over both of Core's APIs.

Each test drives ``run()`` of a trigger rebuilt from ``serialize()``, as the triggerer does, with
an asset state that outlives the trigger instance (``AssetState`` below keeps JSON, as Airflow's
asset state store does), so a "restart" is a new instance on the same state.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cerebelum_provider.client import SyncExecutionClient
from cerebelum_provider.models import ExecutionState
from cerebelum_provider.triggers import execution_events
from cerebelum_provider.triggers.cerebelum import CerebelumExecutionEventTrigger
from tests.core_apis import core_url, current_api

POLL = 0.05
#: Long enough for several polls: a watcher quiet this long has nothing more to say.
QUIET = 0.4
PAYLOAD_KEYS = {"execution_id", "workflow_name", "state", "error_kind", "error_message", "seen_at"}


class AssetState:
    """Airflow's asset state accessor as a trigger sees it: ``aget``/``aset`` of JSON values."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.writes = 0

    async def aget(self, key: str, default: Any = None) -> Any:
        return json.loads(self.values[key]) if key in self.values else default

    async def aset(self, key: str, value: Any) -> None:
        if value is None:
            raise ValueError("Cannot set value as None")
        self.values[key] = json.dumps(value)
        self.writes += 1


def resume(core, execution_id: str) -> str:
    """Resume ``execution_id`` through a client closed right after (no socket left to the collector)."""
    with SyncExecutionClient(core_url(core)) as client:
        return client.resume_execution(execution_id)


def rebuilt(
    trigger: CerebelumExecutionEventTrigger, store: AssetState | None
) -> CerebelumExecutionEventTrigger:
    """What the triggerer does: import the class path, call it with the kwargs, inject the store."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    instance = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    instance.asset_state_store = store
    instance.persist_grace = 0.01
    return instance


class Watcher:
    """A running trigger whose events land in a queue; ``stop()`` is a triggerer shutting down."""

    def __init__(self, trigger: CerebelumExecutionEventTrigger, store: AssetState | None) -> None:
        self.trigger = rebuilt(trigger, store)
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task = asyncio.create_task(self._consume(self.trigger.run()))

    async def _consume(self, stream: AsyncIterator[Any]) -> None:
        async for event in stream:
            await self.events.put(event.payload)

    async def take(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The next ``count`` events (fails after ``timeout`` seconds without them)."""
        taken = []
        async with asyncio.timeout(timeout):
            while len(taken) < count:
                if self._task.done():
                    self._task.result()
                try:
                    taken.append(await asyncio.wait_for(self.events.get(), 0.1))
                except TimeoutError:
                    continue
        return taken

    async def settled(self, core: Any, timeout: float = 10.0) -> None:
        """Wait until the watcher has taken its first snapshot (its baseline): two listings done.

        The trigger asks for the next listing only once it has handled the one before."""
        target = core.call_counts().get("ListExecutions", 0) + 2
        async with asyncio.timeout(timeout):
            while core.call_counts().get("ListExecutions", 0) < target:
                await asyncio.sleep(0.01)

    async def quiet(self, seconds: float = QUIET) -> list[dict[str, Any]]:
        """Every event that arrives within ``seconds`` (expected: none)."""
        await asyncio.sleep(seconds)
        extra = []
        while not self.events.empty():
            extra.append(self.events.get_nowait())
        return extra

    async def stop(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


def failing_executions(core: Any, count: int, fail_times: int = 1, workflow: str = "orders") -> list[str]:
    ids = [core.start_execution(workflow, fail_at=0, fail_times=fail_times) for _ in range(count)]
    for execution_id in ids:
        core.advance(1, execution_id)
    return ids


def trigger_for(**kwargs: Any) -> CerebelumExecutionEventTrigger:
    return CerebelumExecutionEventTrigger(**{"workflow_name": "orders", "poll_interval": POLL, **kwargs})


def ids_of(events: list[dict[str, Any]]) -> list[str]:
    return sorted(event["execution_id"] for event in events)


# Arguments and serialize() ----------------------------------------------------------------------


def test_serialize_returns_exactly_the_init_arguments():
    trigger = CerebelumExecutionEventTrigger(
        cerebelum_conn_id="core_prod",
        workflow_name="orders",
        states=[ExecutionState.FAILED, "EXECUTION_WAITING_FOR_APPROVAL"],
        poll_interval=12,
        include_existing=True,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "cerebelum_provider.triggers.cerebelum.CerebelumExecutionEventTrigger"
    assert kwargs == {
        "cerebelum_conn_id": "core_prod",
        "workflow_name": "orders",
        "states": ["FAILED", "WAITING_FOR_APPROVAL"],
        "poll_interval": 12.0,
        "include_existing": True,
    }
    assert rebuilt(trigger, None).serialize() == (classpath, kwargs)
    assert set(kwargs) == set(CerebelumExecutionEventTrigger.__init__.__code__.co_varnames[1:6])


def test_default_arguments():
    assert CerebelumExecutionEventTrigger().serialize()[1] == {
        "cerebelum_conn_id": "cerebelum_default",
        "workflow_name": None,
        "states": ["FAILED"],
        "poll_interval": 30.0,
        "include_existing": False,
    }


def test_equal_filters_share_one_poll_and_others_do_not():
    one = CerebelumExecutionEventTrigger(workflow_name="orders", states=["FAILED", "COMPLETED"])
    same = CerebelumExecutionEventTrigger(
        workflow_name="orders", states=("EXECUTION_COMPLETED", "failed"), include_existing=True
    )
    assert one.shared_stream_key() == same.shared_stream_key()
    payments = CerebelumExecutionEventTrigger(workflow_name="payments")
    assert one.shared_stream_key() != payments.shared_stream_key()
    assert one.shared_stream_key() != CerebelumExecutionEventTrigger(
        workflow_name="orders", states=["FAILED", "COMPLETED"], cerebelum_conn_id="other"
    ).shared_stream_key()


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"cerebelum_conn_id": ""}, ValueError, "cerebelum_conn_id"),
        ({"workflow_name": ""}, ValueError, "workflow_name"),
        ({"states": []}, ValueError, "states"),
        ({"states": ["BROKEN"]}, ValueError, "BROKEN"),
        ({"poll_interval": 0}, ValueError, "poll_interval"),
        ({"include_existing": "yes"}, TypeError, "include_existing"),
    ],
)
def test_bad_arguments_are_refused_with_their_name(kwargs, error, words):
    with pytest.raises(error, match=words):
        CerebelumExecutionEventTrigger(**kwargs)


# Firing against the emulator ----------------------------------------------------------------


async def test_fires_once_per_entry_with_the_error(core, cerebelum_conn):
    store = AssetState()
    watcher = Watcher(trigger_for(), store)
    try:
        await watcher.settled(core)  # nothing failed yet
        [execution_id] = failing_executions(core, 1, fail_times=2, workflow="orders")
        core.start_execution("payments", fail_at=0)  # another workflow: not watched
        core.advance()
        [event] = await watcher.take(1)
        assert set(event) == PAYLOAD_KEYS
        assert event["execution_id"] == execution_id
        assert event["state"] == "EXECUTION_FAILED"
        assert (event["error_kind"], event["error_message"]) == ("step_error", "boom")
        assert event["workflow_name"] == "orders"
        assert await watcher.quiet() == []

        # Resumed, seen running, failed again: a second entry.
        assert resume(core, execution_id) == "resumed"
        assert await watcher.quiet() == []
        core.advance(1, execution_id)
        [again] = await watcher.take(1)
        assert again["execution_id"] == execution_id
        assert await watcher.quiet() == []
    finally:
        await watcher.stop()


@pytest.mark.apis("http")  # REST's events_count tells the two failures apart; gRPC's list cannot
async def test_resumed_and_failed_again_between_two_polls_fires_twice(core, cerebelum_conn):
    [execution_id] = failing_executions(core, 1, fail_times=2)
    watcher = Watcher(trigger_for(include_existing=True, poll_interval=0.5), store := AssetState())
    try:
        [first] = await watcher.take(1)
        assert first["execution_id"] == execution_id
        resume(core, execution_id)
        core.advance(1, execution_id)  # fails again well within one poll interval
        [second] = await watcher.take(1)
        assert second["execution_id"] == execution_id
        assert await watcher.quiet(1.2) == []
        assert store.writes >= 2
    finally:
        await watcher.stop()


async def test_existing_executions_fire_only_with_include_existing(core, cerebelum_conn):
    existing = failing_executions(core, 3)
    quiet = Watcher(trigger_for(), AssetState())
    await quiet.settled(core)  # before the second watcher polls too
    loud = Watcher(trigger_for(include_existing=True), AssetState())
    try:
        assert ids_of(await loud.take(3)) == sorted(existing)
        assert await quiet.quiet() == []
        assert await loud.quiet(0) == []
        [new] = failing_executions(core, 1)
        assert ids_of(await quiet.take(1)) == [new]
        assert ids_of(await loud.take(1)) == [new]
    finally:
        await quiet.stop()
        await loud.stop()


async def test_a_burst_of_fifty_failures_gives_fifty_events(core, cerebelum_conn):
    watcher = Watcher(trigger_for(), AssetState())
    try:
        await watcher.settled(core)
        burst = failing_executions(core, 50)
        events = await watcher.take(50, timeout=10)
        assert ids_of(events) == sorted(burst)
        assert await watcher.quiet() == []
    finally:
        await watcher.stop()


async def test_restart_fires_nothing_twice_and_catches_what_happened_while_down(core, cerebelum_conn):
    store = AssetState()
    before = failing_executions(core, 2, fail_times=2)
    first = Watcher(trigger_for(include_existing=True), store)
    try:
        assert ids_of(await first.take(2)) == sorted(before)
        await first.quiet()
    finally:
        await first.stop()

    # While the triggerer is down: one new failure, and one of the old ones resumed and failed
    # again (seen by neither poll as running, yet a new entry over REST; over gRPC it stays one).
    [new] = failing_executions(core, 1)
    again = before[0]
    resume(core, again)
    core.advance(1, again)
    expected = sorted([new, again]) if current_api() == "http" else [new]

    second = Watcher(trigger_for(include_existing=True), store)
    try:
        assert ids_of(await second.take(len(expected))) == expected
        assert await second.quiet() == []
    finally:
        await second.stop()

    third = Watcher(trigger_for(include_existing=True), store)
    try:
        assert await third.quiet() == []
    finally:
        await third.stop()


async def test_restart_catches_an_execution_that_left_and_came_back(core, cerebelum_conn):
    store = AssetState()
    [execution_id] = failing_executions(core, 1, fail_times=2)
    first = Watcher(trigger_for(include_existing=True), store)
    try:
        await first.take(1)
        resume(core, execution_id)
        await first.quiet()  # the watcher sees it leave FAILED and records that
    finally:
        await first.stop()
    core.advance(1, execution_id)
    second = Watcher(trigger_for(), store)
    try:
        assert ids_of(await second.take(1)) == [execution_id]
        assert await second.quiet() == []
    finally:
        await second.stop()


async def test_without_a_store_it_remembers_in_memory_and_says_what_is_not_guaranteed(
    core, cerebelum_conn, capfd
):
    failing_executions(core, 2)
    watcher = Watcher(trigger_for(), None)
    try:
        await watcher.settled(core)
        assert await watcher.quiet() == []
        [new] = failing_executions(core, 1)
        assert ids_of(await watcher.take(1)) == [new]
        assert await watcher.quiet() == []
    finally:
        await watcher.stop()
    # Airflow's structlog writes trigger logs to stdout.
    warnings = [line for line in capfd.readouterr().out.splitlines() if "no asset state store" in line]
    assert len(warnings) == 1
    assert "in memory only" in warnings[0]


@pytest.mark.airflow_3_3  # Airflow 3.2 has no asset state store: the floor stage leaves this test out
async def test_a_trigger_shared_by_two_assets_reads_no_private_airflow_attribute(core, cerebelum_conn, capfd):
    # Airflow 3.3+ hands a trigger watched by two assets one accessor object for both; its public
    # methods refuse to answer without the asset named, so the watcher remembers in memory.
    from airflow.sdk import Asset
    from airflow.sdk.execution_time import context

    private_reads: list[str] = []

    class Accessors(context.AssetStateStoreAccessors):
        def __getattribute__(self, name: str) -> Any:
            if name.startswith("_") and not name.startswith("__"):
                caller = sys._getframe(1).f_globals.get("__name__", "")
                if caller.startswith("cerebelum_provider"):
                    private_reads.append(name)
            return super().__getattribute__(name)

    store = Accessors(inlets=[Asset(name="failed_orders", uri="cerebelum://a"), Asset(name="b", uri="cerebelum://b")])
    failing_executions(core, 1)
    watcher = Watcher(trigger_for(), store)
    try:
        await watcher.settled(core)
        [new] = failing_executions(core, 1)
        assert ids_of(await watcher.take(1)) == [new]
    finally:
        await watcher.stop()
    assert private_reads == []
    warnings = [line for line in capfd.readouterr().out.splitlines() if "no asset state store it can use" in line]
    assert len(warnings) == 1 and "in memory only" in warnings[0]


@pytest.mark.apis("grpc")  # Core's gRPC list answers an internal error with an empty list
async def test_an_empty_listing_from_a_listing_error_fires_nothing_again(core, cerebelum_conn):
    store = AssetState()
    existing = failing_executions(core, 3)
    watcher = Watcher(trigger_for(include_existing=True), store)
    try:
        await watcher.take(3)
        core.break_listing()  # Core answers OK with an empty list, poll after poll
        await watcher.quiet()
        core.break_listing(False)
        assert await watcher.quiet() == []
    finally:
        await watcher.stop()
    # Every empty listing was doubted and read back: one status query per poll, no more.
    assert core.call_counts().get("GetExecutionStatus", 0) >= 2
    assert len(existing) == 3


@pytest.mark.waits
async def test_a_watcher_survives_core_being_down(core_factory, monkeypatch):
    from tests.core_apis import connection_uri

    down = core_factory()
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(down))
    down.fail_next(6, rpcs="ListExecutions")
    watcher = Watcher(trigger_for(include_existing=True), AssetState())
    try:
        [execution_id] = failing_executions(down, 1)
        # six refused lists cost a full retry budget (5 attempts, backoff) and one more; the deadline
        # is generous because a loaded machine stretches every backoff
        assert ids_of(await watcher.take(1, timeout=60)) == [execution_id]
    finally:
        await watcher.stop()


def test_remembered_entries_fit_airflows_default_value_limit():
    count = execution_events.MAX_REMEMBERED_ENTRIES + 50
    digests = {bytes([i % 256, i // 256, 0, 0, 0, 1]) for i in range(count)}
    saved: dict[str, Any] = {}

    class Capture:
        async def aset(self, key: str, value: Any) -> None:
            saved[key] = value

    store = execution_events._SeenStore(Capture(), "k", {"states": ["FAILED"]})
    asyncio.run(store.save(digests))
    assert len(json.dumps(saved["k"])) < 65535


@pytest.mark.airflow_3_3  # Airflow 3.2 has no shared streams: the floor stage leaves this test out
async def test_watchers_of_one_filter_share_one_poll(core, cerebelum_conn):
    from airflow.triggers import shared_stream
    manager = shared_stream.SharedStreamManager()
    existing = failing_executions(core, 2)
    watchers = [
        rebuilt(trigger_for(), AssetState()),
        rebuilt(trigger_for(), AssetState()),
        rebuilt(trigger_for(include_existing=True), AssetState()),
    ]
    keys = {watcher.shared_stream_key() for watcher in watchers}
    assert len(keys) == 1
    [key] = keys
    received: list[list[str]] = [[] for _ in watchers]

    async def consume(trigger_id: int, watcher: CerebelumExecutionEventTrigger) -> None:
        stream = manager.subscribe(trigger_id=trigger_id, trigger=watcher, key=key)
        async for event in watcher.filter_shared_stream(stream):
            received[trigger_id].append(event.payload["execution_id"])

    def lists() -> int:
        return core.call_counts().get("ListExecutions", 0)

    async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        # waits on what happened, not on the clock: a loaded machine polls late, never differently
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s; received {received}"
            await asyncio.sleep(0.02)

    tasks = [asyncio.create_task(consume(number, watcher)) for number, watcher in enumerate(watchers)]
    try:
        # the first poll learns what already failed; only what fails after it is news
        await until(lambda: lists() >= 1 and len(received[2]) >= len(existing), "a first shared poll")
        [new] = failing_executions(core, 1)
        await until(lambda: all(new in got for got in received), "every watcher to receive the new failure")
        # one window with the three sharing a stream, then one as long with each on its own
        before_shared = lists()
        await asyncio.sleep(1.0)
        shared_lists = lists() - before_shared
    finally:
        for number, task in enumerate(tasks):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await manager.unsubscribe(number, key)
    assert received[0] == [new]
    assert received[1] == [new]
    assert sorted(received[2]) == sorted([*existing, new])

    # The same three watchers on their own poll three times as often.
    alone = [Watcher(trigger_for(), AssetState()) for _ in range(3)]
    before_alone = lists()
    try:
        await asyncio.sleep(1.0)
    finally:
        for watcher in alone:
            await watcher.stop()
    alone_lists = lists() - before_alone
    # About three times as many lists; a stream that stopped being shared would make it about one.
    # 1.5 leaves room for a loaded machine, which slows the second window more than the first.
    assert alone_lists >= 1.5 * shared_lists, (shared_lists, alone_lists)


# The example DAG's bookkeeping ------------------------------------------------------------------


def test_the_example_resumes_each_execution_at_most_max_resumes_times_then_notifies():
    from example_dags.example_cerebelum_event_resume import KEPT_COUNTS, MAX_RESUMES, plan_resumes

    failure = {"execution_id": "e-1", "workflow_name": "orders", "error_kind": "step_error"}
    counts: dict[str, int] = {}
    for attempt in range(MAX_RESUMES):
        to_resume, give_up, counts = plan_resumes([failure, failure], counts)
        assert (to_resume, give_up) == (["e-1"], []), attempt
    to_resume, give_up, counts = plan_resumes([failure, {**failure, "execution_id": "e-2"}], counts)
    assert (to_resume, give_up) == (["e-2"], [failure])
    assert counts == {"e-1": MAX_RESUMES, "e-2": 1}

    many = [{"execution_id": f"x-{number}"} for number in range(KEPT_COUNTS + 5)]
    _, _, counts = plan_resumes(many, counts)
    assert len(counts) == KEPT_COUNTS
    assert "e-1" not in counts and f"x-{KEPT_COUNTS + 4}" in counts
