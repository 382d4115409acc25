"""CerebelumExecutionTrigger against the emulator: always through serialize() -> rebuild -> run()."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import ClassVar

import grpc
import pytest

from cerebelum_provider.hooks._shared_clients import shared_client_count
from cerebelum_provider.models import ExecutionState
from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger
from tests.core_apis import connection_uri, core_url

TOKEN = "s3cret-trigger-token"
EVENT_KEYS = {"status", "execution_id", "state", "message", "execution", "error_type", "core_address"}


def rebuilt(trigger: CerebelumExecutionTrigger) -> CerebelumExecutionTrigger:
    """What the triggerer does: import the class path and call it with the serialized kwargs."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    return cls(**kwargs)


async def events_of(trigger: CerebelumExecutionTrigger) -> list[dict]:
    """Run the rebuilt trigger to the end and return every event payload it yielded."""
    return [event.payload async for event in rebuilt(trigger).run()]


async def only_event(trigger: CerebelumExecutionTrigger) -> dict:
    events = await events_of(trigger)
    assert len(events) == 1, events
    assert set(events[0]) == EVENT_KEYS
    return events[0]


async def advance_while(core, task: asyncio.Task, steps: int = 1, every: float = 0.02) -> None:
    """Move the emulator on by ``steps`` each ``every`` seconds until ``task`` is done."""
    while not task.done():
        await asyncio.sleep(every)
        core.advance(steps)


# serialize() ----------------------------------------------------------------------------------


def test_serialize_returns_exactly_the_init_arguments():
    trigger = CerebelumExecutionTrigger(
        "exec-1",
        cerebelum_conn_id="core_prod",
        poll_interval=2.5,
        success_states=[ExecutionState.COMPLETED, "SLEEPING"],
        failure_states=("EXECUTION_FAILED",),
        end_time=1_900_000_000.5,
        max_sleep_wait=120,
        unavailable_timeout=60,
        stop_on_kill=True,
        include_outputs=True,
        unavailable_since=1_899_999_000.0,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "cerebelum_provider.triggers.cerebelum.CerebelumExecutionTrigger"
    assert kwargs == {
        "execution_id": "exec-1",
        "cerebelum_conn_id": "core_prod",
        "poll_interval": 2.5,
        "success_states": ["EXECUTION_COMPLETED", "EXECUTION_SLEEPING"],
        "failure_states": ["EXECUTION_FAILED"],
        "end_time": 1_900_000_000.5,
        "max_sleep_wait": 120.0,
        "unavailable_timeout": 60.0,
        "stop_on_kill": True,
        "include_outputs": True,
        "unavailable_since": 1_899_999_000.0,
    }
    assert rebuilt(trigger).serialize() == (classpath, kwargs)
    assert set(kwargs) == set(CerebelumExecutionTrigger.__init__.__code__.co_varnames[1:12])


def test_serialized_kwargs_survive_airflows_serde():
    from airflow.sdk.serde import deserialize, serialize

    trigger = CerebelumExecutionTrigger("exec-1", end_time=1_900_000_000.0)
    _, kwargs = trigger.serialize()
    assert CerebelumExecutionTrigger(**deserialize(serialize(kwargs))).serialize() == trigger.serialize()


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"execution_id": ""}, ValueError, "execution_id"),
        ({"execution_id": None}, TypeError, "execution_id"),
        ({"execution_id": 42}, TypeError, "execution_id"),
        ({"poll_interval": 0}, ValueError, "poll_interval"),
        ({"poll_interval": -1}, ValueError, "poll_interval"),
        ({"poll_interval": float("nan")}, ValueError, "poll_interval"),
        ({"poll_interval": "10"}, TypeError, "poll_interval"),  # a number, not its text
        ({"success_states": ["DONE"]}, ValueError, "success_states"),
        ({"success_states": []}, ValueError, "success_states"),
        ({"failure_states": [3]}, TypeError, "failure_states"),
        ({"success_states": ["FAILED"]}, ValueError, "EXECUTION_FAILED"),
        ({"end_time": "tomorrow"}, ValueError, "end_time"),
        ({"max_sleep_wait": 0}, ValueError, "max_sleep_wait"),
        ({"unavailable_timeout": -5}, ValueError, "unavailable_timeout"),
        ({"cerebelum_conn_id": ""}, ValueError, "cerebelum_conn_id"),
    ],
)
def test_bad_arguments_are_refused_at_construction(kwargs, error, names):
    arguments = {"execution_id": "exec-1", **kwargs}
    with pytest.raises(error, match=names):
        CerebelumExecutionTrigger(**arguments)


# run(): outcomes -----------------------------------------------------------------------------


async def test_success_after_the_execution_moves_on(core, cerebelum_conn):
    execution_id = core.start_execution("orders")
    trigger = CerebelumExecutionTrigger(execution_id, poll_interval=0.01)
    task = asyncio.ensure_future(only_event(trigger))
    await advance_while(core, task)
    event = task.result()
    assert event["status"] == "success"
    assert event["state"] == "EXECUTION_COMPLETED"
    assert event["execution"]["status"] == "EXECUTION_COMPLETED"
    assert event["execution"]["current_step_index"] == event["execution"]["total_steps"] == 4
    assert event["core_address"] == core_url(core)


async def test_failure_carries_cores_error(core, cerebelum_conn):
    execution_id = core.start_execution("orders", fail_at="validate", error_kind="card_declined", error_message="no funds")
    core.run_until_settled()
    event = await only_event(CerebelumExecutionTrigger(execution_id, poll_interval=0.01))
    assert event["status"] == "failure"
    assert event["state"] == "EXECUTION_FAILED"
    assert "card_declined: no funds" in event["message"]
    error = event["execution"]["error"]
    assert (error["kind"], error["message"]) == ("card_declined", "no funds")


async def test_unknown_execution_is_an_immediate_error(core, cerebelum_conn):
    event = await only_event(CerebelumExecutionTrigger("no-such-execution", poll_interval=0.01))
    assert event["status"] == "error"
    assert event["error_type"] == "ExecutionNotFoundError"
    assert "no-such-execution" in event["message"] and core_url(core) in event["message"]
    assert core.call_counts()["GetExecutionStatus"] == 1


@pytest.mark.parametrize(
    ("state_setup", "success_states", "state"),
    [
        (lambda core, eid: None, ["RUNNING"], "EXECUTION_RUNNING"),
        (lambda core, eid: core.advance(1), ["SLEEPING"], "EXECUTION_SLEEPING"),
        (lambda core, eid: core.advance(1), ["EXECUTION_WAITING_FOR_APPROVAL"], "EXECUTION_WAITING_FOR_APPROVAL"),
    ],
    ids=["running", "sleeping", "waiting_for_approval"],
)
async def test_any_state_can_be_a_success_state(core, cerebelum_conn, state_setup, success_states, state):
    kind = state.removeprefix("EXECUTION_")
    execution_id = core.start_execution(
        "orders",
        sleep_at=0 if kind == "SLEEPING" else None,
        approval_at=0 if kind == "WAITING_FOR_APPROVAL" else None,
    )
    state_setup(core, execution_id)
    event = await only_event(CerebelumExecutionTrigger(execution_id, poll_interval=0.01, success_states=success_states))
    assert (event["status"], event["state"]) == ("success", state)


@pytest.mark.apis("grpc", "http")  # a waiting execution's event carries its approval details over gRPC only
async def test_deadline_gives_a_timeout_event_with_the_last_state(core, cerebelum_conn, core_api):
    execution_id = core.start_execution("orders", approval_at=0)
    core.advance(1)
    # Long enough for the first answer to come before it on a loaded machine (REST, a first connection).
    window = 2.0
    trigger = CerebelumExecutionTrigger(execution_id, poll_interval=0.05, end_time=time.time() + window)
    event = await only_event(trigger)
    assert event["status"] == "timeout"
    assert event["state"] == "EXECUTION_WAITING_FOR_APPROVAL"
    # Core's REST status says that an execution waits, not for what (no approval_info).
    assert (event["execution"]["approval_info"] is not None) is (core_api == "grpc")
    # Polled until the deadline, then once at the deadline; never after it.
    assert 2 <= core.call_counts()["GetExecutionStatus"] <= window / 0.05 + 2


async def test_deadline_already_passed_still_checks_once(core, cerebelum_conn):
    execution_id = core.start_execution("orders")
    core.complete(execution_id)
    event = await only_event(CerebelumExecutionTrigger(execution_id, end_time=time.time() - 10))
    assert event["status"] == "success"


@pytest.mark.waits
async def test_transient_failures_are_retried_until_core_answers(core, cerebelum_conn):
    execution_id = core.start_execution("orders")
    core.complete(execution_id)
    core.fail_next(7, code=grpc.StatusCode.UNAVAILABLE)  # more than one call's retry budget (5)
    event = await only_event(CerebelumExecutionTrigger(execution_id, poll_interval=0.01))
    assert event["status"] == "success"
    assert core.call_counts()["GetExecutionStatus"] == 8


@pytest.mark.waits
async def test_core_down_longer_than_the_budget_is_an_error_naming_the_address(core, cerebelum_conn):
    execution_id = core.start_execution("orders")
    address = core_url(core)
    core.stop()
    started = time.monotonic()
    event = await only_event(CerebelumExecutionTrigger(execution_id, poll_interval=0.01, unavailable_timeout=0.05))
    assert event["status"] == "error"
    assert event["error_type"] == "CoreUnavailableError"
    assert address in event["message"]
    assert time.monotonic() - started < 30  # bounded: one call's retry budget, then the error


async def test_wrong_token_is_an_error_after_one_call(core_factory, monkeypatch):
    guarded = core_factory(token=TOKEN)
    execution_id = guarded.start_execution("orders")
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(guarded, token="wrong-token"))
    event = await only_event(CerebelumExecutionTrigger(execution_id, poll_interval=0.01))
    assert event["status"] == "error"
    assert event["error_type"] == "CerebelumAuthError"
    assert guarded.call_counts().get("GetExecutionStatus", 0) <= 1
    assert "wrong-token" not in event["message"]


async def test_invalid_or_missing_connection_is_an_error_event(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", "cerebelum://core.example.com:notaport")
    event = await only_event(CerebelumExecutionTrigger("exec-1"))
    assert (event["status"], event["error_type"]) == ("error", "InvalidConnection")
    event = await only_event(CerebelumExecutionTrigger("exec-1", cerebelum_conn_id="no_such_connection"))
    assert (event["status"], event["error_type"]) == ("error", "InvalidConnection")
    assert "no_such_connection" in event["message"]


async def test_cancelled_trigger_rebuilt_in_a_new_loop_fires_once(core, cerebelum_conn):
    """A triggerer restart: the running trigger is cancelled; a rebuilt one fires exactly once."""
    execution_id = core.start_execution("orders")
    trigger = CerebelumExecutionTrigger(execution_id, poll_interval=0.01)
    first = asyncio.ensure_future(events_of(trigger))
    while core.call_counts().get("GetExecutionStatus", 0) < 2:
        await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    core.run_until_settled()

    def in_new_loop() -> list[dict]:
        return asyncio.run(events_of(trigger))

    events = await asyncio.to_thread(in_new_loop)
    assert [event["status"] for event in events] == ["success"]


# Sharing and sleeping ------------------------------------------------------------------------


class GatedTrigger(CerebelumExecutionTrigger):
    """The trigger with its waits after the first poll replaced by a gate the test opens: the first
    poll comes after the real jittered wait, every later one exactly when told."""

    gate: asyncio.Event | None = None
    _first_wait_done = False

    async def _sleep(self, seconds: float) -> None:
        if not self._first_wait_done:
            self._first_wait_done = True
            await asyncio.sleep(seconds)
            return
        await self.gate.wait()


@pytest.mark.slow
@pytest.mark.apis("grpc", "http")  # each API shares its own kind of connection (one channel, one pool)
async def test_200_triggers_share_one_connection(core, cerebelum_conn, monkeypatch, core_api):
    # More triggers than twice the HTTP pool's limit, so that a connection per trigger would show.
    count = 200
    # The emulator answers from a thread of this process: 200 calls at once can hold an answer past
    # the default 10 s deadline on a loaded machine, and a re-sent call would spoil the exact count.
    # Each trigger reads its own execution (no shared listing): the calls the connection carries.
    monkeypatch.setenv(
        "AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, timeout="120", coalesce_polling="false")
    )
    monkeypatch.setattr(GatedTrigger, "gate", asyncio.Event())
    execution_ids = [core.start_execution("orders") for _ in range(count)]
    tasks = [asyncio.ensure_future(only_event(GatedTrigger(eid, poll_interval=1.0))) for eid in execution_ids]
    while core.call_counts().get("GetExecutionStatus", 0) < count:
        await asyncio.sleep(0.01)
    # Every trigger has seen RUNNING once and waits at the gate; complete them all, then open it.
    for execution_id in execution_ids:
        core.complete(execution_id)
    GatedTrigger.gate.set()
    events = await asyncio.gather(*tasks)
    assert {event["status"] for event in events} == {"success"}
    if core_api == "grpc":
        assert len(core.peers()) == 1  # one HTTP/2 connection carries every call
    else:
        # HTTP/1.1 carries one call in flight per connection: the one shared pool keeps at most its
        # limit open and reuses them (a connection the loaded server drops is replaced), so the
        # calls use a small multiple of the limit, never a connection per trigger.
        from cerebelum_provider.client._http_transport import POOL_LIMITS

        assert 2 * POOL_LIMITS.max_connections < count
        assert 1 <= len(core.peers()) <= 2 * POOL_LIMITS.max_connections
    assert core.call_counts()["GetExecutionStatus"] == 2 * count
    assert shared_client_count() == 1


class FirstWaitRecordingTrigger(CerebelumExecutionTrigger):
    """The trigger with its first wait recorded and held at a gate the test opens; later waits real."""

    first_waits: ClassVar[list[float]] = []
    gate: asyncio.Event | None = None
    _first_wait_done = False

    async def _sleep(self, seconds: float) -> None:
        if self._first_wait_done:
            await asyncio.sleep(seconds)
            return
        self._first_wait_done = True
        self.first_waits.append(seconds)
        await self.gate.wait()


async def test_triggers_created_together_spread_their_first_polls_over_one_interval(
    core, cerebelum_conn, monkeypatch
):
    count, interval = 200, 1.0
    # 200 calls at once, answered by a thread of this process: a long deadline keeps a loaded
    # machine from re-sending one and spoiling the exact count. Each trigger reads its own
    # execution (no shared listing), so its first poll is counted.
    monkeypatch.setenv(
        "AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, timeout="120", coalesce_polling="false")
    )
    monkeypatch.setattr(FirstWaitRecordingTrigger, "first_waits", [])
    monkeypatch.setattr(FirstWaitRecordingTrigger, "gate", asyncio.Event())
    execution_ids = [core.start_execution("orders") for _ in range(count)]
    tasks = [
        asyncio.ensure_future(only_event(FirstWaitRecordingTrigger(eid, poll_interval=interval)))
        for eid in execution_ids
    ]
    while len(FirstWaitRecordingTrigger.first_waits) < count:
        await asyncio.sleep(0.01)
    # Every trigger has looked its connection up and waits before its first poll.
    assert core.call_counts().get("GetExecutionStatus", 0) == 0
    waits = FirstWaitRecordingTrigger.first_waits
    assert all(0.0 <= wait <= interval for wait in waits)
    # Spread over the whole interval, not one wave: every quarter of it holds its share of starts
    # (200 uniform draws put 50 in each quarter on average; fewer than 20 happens ~1 in 10^8 runs).
    quarters = [sum(1 for wait in waits if q / 4 <= wait / interval < (q + 1) / 4) for q in range(4)]
    assert min(quarters) >= 20, quarters
    for execution_id in execution_ids:
        core.complete(execution_id)
    FirstWaitRecordingTrigger.gate.set()
    events = await asyncio.gather(*tasks)
    assert {event["status"] for event in events} == {"success"}
    assert core.call_counts()["GetExecutionStatus"] == count


async def test_clients_are_shared_per_settings_and_closed_with_the_loop(core, monkeypatch):
    from cerebelum_provider.hooks import _shared_clients
    from cerebelum_provider.hooks.cerebelum import CerebelumHook

    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core))
    monkeypatch.setenv("AIRFLOW_CONN_OTHER_TOKEN", connection_uri(core, token=TOKEN))
    monkeypatch.setenv("AIRFLOW_CONN_SAME_SETTINGS", connection_uri(core))

    async def in_one_loop():
        default = await CerebelumHook().get_async_client()
        assert await CerebelumHook().get_async_client() is default
        assert await CerebelumHook("same_settings").get_async_client() is default
        assert await CerebelumHook("other_token").get_async_client() is not default
        assert shared_client_count() == 2
        return asyncio.get_running_loop(), default

    loop, client_a = await asyncio.to_thread(asyncio.run, in_one_loop())
    # asyncio.run cancelled the keeper tasks at shutdown: the loop's clients are closed and gone.
    assert not _shared_clients._clients_by_loop.get(loop)
    loop_b, client_b = await asyncio.to_thread(asyncio.run, in_one_loop())
    assert client_b is not client_a


class VirtualClockTrigger(CerebelumExecutionTrigger):
    """The trigger with its two time seams on a virtual clock that also moves the emulator's; every
    wait is recorded in ``sleeps`` (the first one is the jittered start)."""

    core = None
    clock = 0.0
    sleeps: ClassVar[list[float]] = []

    @classmethod
    def _now(cls) -> float:
        return cls.clock

    @classmethod
    async def _sleep(cls, seconds: float) -> None:
        cls.sleeps.append(seconds)
        cls.clock += seconds
        cls.core.advance_time(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def virtual_clock(core, monkeypatch):
    """``VirtualClockTrigger`` bound to ``core``, its clock at 0 and no waits recorded yet."""
    monkeypatch.setattr(VirtualClockTrigger, "core", core)
    monkeypatch.setattr(VirtualClockTrigger, "clock", 0.0)
    monkeypatch.setattr(VirtualClockTrigger, "sleeps", [])
    return VirtualClockTrigger


async def sleeping_execution(core) -> str:
    execution_id = core.start_execution("orders", sleep_at=0, sleep_ms=600_000)
    core.advance(1)
    assert core.status(execution_id).status is ExecutionState.SLEEPING
    return execution_id


# Sleep-aware polling reads sleep_info, which only gRPC reports; over REST a sleeping execution
# is polled every interval.
@pytest.mark.apis("grpc")
async def test_sleeping_execution_costs_at_most_two_polls_per_minute_window(
    core, cerebelum_conn, virtual_clock, monkeypatch
):
    execution_id = await sleeping_execution(core)
    monkeypatch.setattr(VirtualClockTrigger, "clock", 1_000.0)
    trigger = VirtualClockTrigger(execution_id, poll_interval=1.0, end_time=1_060.0)
    events = [event.payload async for event in trigger.run()]
    assert [event["status"] for event in events] == ["timeout"]
    # Fixed polling would have sent 61 queries in the 60 s window.
    assert core.call_counts()["GetExecutionStatus"] <= 2


# Sleep-aware polling reads sleep_info, which only gRPC reports; over REST a sleeping execution
# is polled every interval.
@pytest.mark.apis("grpc")
async def test_wake_up_is_seen_within_one_poll_interval(core, cerebelum_conn, virtual_clock):
    execution_id = await sleeping_execution(core)
    trigger = VirtualClockTrigger(execution_id, poll_interval=1.0, max_sleep_wait=300.0, success_states=["RUNNING"])
    events = [event.payload async for event in trigger.run()]
    assert [event["status"] for event in events] == ["success"]
    wake_at = 600.0
    assert wake_at <= VirtualClockTrigger.clock <= wake_at + 1.0
    # 600 s of sleep with 300 s waits: within the first second (the jittered start), 300 s later,
    # just before waking, then the wake-up poll.
    assert 0.0 <= VirtualClockTrigger.sleeps[0] <= 1.0
    assert core.call_counts()["GetExecutionStatus"] == 4


async def test_first_poll_is_never_later_than_the_deadline(core, cerebelum_conn, virtual_clock):
    execution_id = core.start_execution("orders", approval_at=0)
    core.advance(1)
    day = 86_400.0
    trigger = VirtualClockTrigger(execution_id, poll_interval=day, end_time=0.5)
    events = [event.payload async for event in trigger.run()]
    assert [event["status"] for event in events] == ["timeout"]
    # The jittered start (a random point of a day) is cut to the deadline.
    assert VirtualClockTrigger.sleeps[0] <= 0.5
    assert VirtualClockTrigger.clock == pytest.approx(0.5)
    assert 1 <= core.call_counts()["GetExecutionStatus"] <= 2


# Secrets -------------------------------------------------------------------------------------


async def test_token_never_in_kwargs_repr_events_or_logs(core_factory, monkeypatch, caplog, capfd):
    guarded = core_factory(token=TOKEN)
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(guarded, token=TOKEN))
    caplog.set_level(logging.DEBUG)
    ok = guarded.start_execution("orders")
    guarded.complete(ok)
    trigger = CerebelumExecutionTrigger(ok, poll_interval=0.01)
    missing = CerebelumExecutionTrigger("missing", poll_interval=0.01)
    events = [await only_event(trigger), await only_event(missing)]
    assert [event["status"] for event in events] == ["success", "error"]
    captured = capfd.readouterr()
    for text in (repr(trigger), str(trigger.serialize()), str(events), caplog.text, captured.out, captured.err):
        assert TOKEN not in text


# Sleep-aware polling reads sleep_info, which only gRPC reports; over REST a sleeping execution
# is polled every interval.
@pytest.mark.apis("grpc")
async def test_sleep_wait_is_never_shorter_than_the_poll_interval(core, cerebelum_conn, virtual_clock):
    execution_id = await sleeping_execution(core)
    trigger = VirtualClockTrigger(execution_id, poll_interval=10.0, max_sleep_wait=1.0, end_time=60.0)
    events = [event.payload async for event in trigger.run()]
    assert [event["status"] for event in events] == ["timeout"]
    # A jittered start j < 10 s, then polls at j + 10, ..., j + 50 and one at the 60 s deadline.
    first, *later = VirtualClockTrigger.sleeps
    assert 0.0 <= first < 10.0
    assert later[:-1] == [10.0] * 5 and 0.0 <= later[-1] <= 10.0
    assert core.call_counts()["GetExecutionStatus"] == 7


async def test_a_run_reads_the_connection_settings_once(core, cerebelum_conn, monkeypatch):
    from cerebelum_provider.hooks.cerebelum import CerebelumHook

    reads = []
    read_settings = CerebelumHook.aget_settings

    async def counted(self):
        reads.append(self.cerebelum_conn_id)
        return await read_settings(self)

    monkeypatch.setattr(CerebelumHook, "aget_settings", counted)
    execution_id = core.start_execution("orders")
    core.complete(execution_id)
    event = await only_event(CerebelumExecutionTrigger(execution_id, poll_interval=0.01))
    assert event["status"] == "success"
    assert reads == ["cerebelum_default"]


# Airflow 3.2's own aget_connection decodes extras with the blocking extra_dejson: the floor stage
# leaves this test out.
@pytest.mark.airflow_3_3
async def test_connection_extras_are_read_without_blocking_calls(core, monkeypatch):
    """In a triggerer the sync ``extra_dejson`` talks to the supervisor and can raise
    DeadlockImminentError on the event loop; the trigger path must use ``aextra_dejson``."""
    from airflow.sdk.definitions.connection import Connection

    def forbidden(self):
        raise AssertionError("Connection.extra_dejson called on the event loop")

    monkeypatch.setattr(Connection, "extra_dejson", property(forbidden))
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, timeout="5", tls="false"))
    execution_id = core.start_execution("orders")
    core.complete(execution_id)
    event = await only_event(CerebelumExecutionTrigger(execution_id, poll_interval=0.01))
    assert event["status"] == "success"


def test_backoff_while_core_is_down_doubles_and_stays_bounded():
    trigger = CerebelumExecutionTrigger("exec-1", poll_interval=10.0)
    assert [trigger._unavailable_backoff(n) for n in (1, 2, 3, 4, 5, 6)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert trigger._unavailable_backoff(100_000) == 30.0  # a week of failures: no overflow
    assert CerebelumExecutionTrigger("exec-1", poll_interval=60.0)._unavailable_backoff(100) == 60.0
