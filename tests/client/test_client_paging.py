"""iter_executions over a set that changes between pages: each execution once, none skipped."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cerebelum_provider.client._operations import ExecutionPage, ExecutionPager
from cerebelum_provider.models import ExecutionState, ExecutionStatus
from cerebelum_provider.proto import worker_service_pb2 as pb
from tests.client.scripted_core import paged, status_message


def _ids(executions):
    return [execution.execution_id for execution in executions]


class ChangingSet:
    """A list that changes between calls, as Core's filtered list does while paging."""

    def __init__(self, count: int, changes: dict[int, callable]) -> None:
        self.items = [status_message(f"e{number:03d}") for number in range(count)]
        self.changes = changes
        self.calls = 0

    def current(self) -> list[pb.ExecutionStatus]:
        self.calls += 1
        change = self.changes.get(self.calls)
        if change is not None:
            change(self.items)
        return list(self.items)


def move_to_front(execution_id):
    def change(items):
        index = next(i for i, item in enumerate(items) if item.execution_id == execution_id)
        items.insert(0, items.pop(index))

    return change


def remove(execution_id):
    def change(items):
        items[:] = [item for item in items if item.execution_id != execution_id]

    return change


def add_front(execution_id):
    def change(items):
        items.insert(0, status_message(execution_id))

    return change


async def test_resumed_execution_moving_to_the_front_is_not_skipped(scripted, make_client):
    # e150 is resumed while we read page 1: it jumps to the front, page 2 shifts by one and
    # plain offset paging would never see it (and would see e099 twice).
    changing = ChangingSet(250, {2: move_to_front("e150")})
    scripted.default("ListExecutions", paged(changing.current))
    seen = await make_client(scripted.address).collect(page_size=100)
    assert sorted(_ids(seen)) == [f"e{number:03d}" for number in range(250)]
    assert len(seen) == len(set(_ids(seen)))
    assert changing.calls == 6  # a dirty first pass of 3 pages, then a clean one


async def test_execution_removed_between_pages_does_not_hide_others(scripted, make_client):
    changing = ChangingSet(30, {2: remove("e003")})
    scripted.default("ListExecutions", paged(changing.current))
    seen = await make_client(scripted.address).collect(page_size=10)
    expected = {f"e{number:03d}" for number in range(30)}
    assert expected - {"e003"} <= set(_ids(seen))
    assert len(seen) == len(set(_ids(seen)))


async def test_new_execution_arriving_mid_iteration(scripted, make_client):
    changing = ChangingSet(25, {3: add_front("new")})
    scripted.default("ListExecutions", paged(changing.current))
    seen = await make_client(scripted.address).collect(page_size=10)
    assert {f"e{number:03d}" for number in range(25)} <= set(_ids(seen))
    assert len(seen) == len(set(_ids(seen)))


async def test_stable_set_takes_exactly_one_pass(scripted, make_client):
    changing = ChangingSet(45, {})
    scripted.default("ListExecutions", paged(changing.current))
    seen = await make_client(scripted.address).collect(workflow_name="orders", status="RUNNING", page_size=20)
    assert _ids(seen) == [f"e{number:03d}" for number in range(45)]
    requests = [item.request for item in scripted.received()]
    assert [(r.offset, r.limit) for r in requests] == [(0, 20), (20, 20), (40, 20)]
    assert all(r.workflow_name == "orders" and r.status == pb.EXECUTION_RUNNING for r in requests)


async def test_empty_set_is_one_call(scripted, make_client):
    scripted.default("ListExecutions", pb.ListExecutionsResponse())
    assert await make_client(scripted.address).collect() == []
    assert scripted.count() == 1


async def test_server_that_keeps_changing_still_ends(scripted, make_client):
    # Every call reshuffles: passes never come out clean, but a pass finding nothing new ends it.
    shuffler = random.Random(7)
    items = [status_message(f"e{number:02d}") for number in range(12)]

    def reshuffled():
        shuffler.shuffle(items)
        return list(items)

    scripted.default("ListExecutions", paged(reshuffled))
    seen = await make_client(scripted.address).collect(page_size=5)
    assert len(seen) == len(set(_ids(seen))) and set(_ids(seen)) <= {item.execution_id for item in items}
    assert scripted.count() < 100


def _status(execution_id: str) -> ExecutionStatus:
    return ExecutionStatus(execution_id, "w", ExecutionState.RUNNING, None, None, 0, 1, "", 0.0)


@settings(max_examples=150, deadline=None)
@given(
    initial=st.integers(min_value=0, max_value=40),
    page_size=st.integers(min_value=1, max_value=12),
    events=st.lists(
        st.tuples(st.sampled_from(["move", "remove", "add"]), st.integers(min_value=0, max_value=1000)),
        max_size=6,
    ),
)
def test_pager_property_each_once_and_none_that_stayed_is_skipped(initial, page_size, events):
    """Changes happen during the first pages; afterwards the set is stable, as Core settles."""
    items = [f"s{number}" for number in range(initial)]
    stayed = set(items)
    pending = list(events)
    pager = ExecutionPager(page_size=page_size)
    yielded = []
    calls = 0
    while (operation := pager.next_operation()) is not None:
        calls += 1
        assert calls < 500
        if pending:
            kind, pick = pending.pop(0)
            if kind == "add":
                items.insert(0, f"n{calls}")
            elif items:
                victim = items[pick % len(items)]
                items.remove(victim)
                if kind == "move":
                    items.insert(0, victim)
                else:
                    stayed.discard(victim)
        request = operation.grpc().request
        page = items[request.offset : request.offset + request.limit]
        yielded += pager.accept(
            ExecutionPage([_status(i) for i in page], len(items), request.offset + len(page) < len(items))
        )
    ids = _ids(yielded)
    assert len(ids) == len(set(ids))
    assert stayed <= set(ids)
