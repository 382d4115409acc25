"""The published cerebelum-sdk client and ours, pointed at the same Core, report the same things.

Both run in this process (tests/peers/sdk_peer.py drives the SDK); that they can is
tests/client/test_sdk_coexistence.py's subject. Known, intended differences, asserted here rather
than hidden:
- the SDK sends ``workflow_name=""`` when no filter is given, which matches nothing on Core,
  so listing is compared with a workflow filter, and the unfiltered listing is shown to differ;
- the SDK reports an unknown id as a normal status with ``error.kind == "not_found"``, ours
  raises ``ExecutionNotFoundError``;
- the SDK's datetimes are naive local time and its numbers floats; compared as instants and values.
"""

from __future__ import annotations

import pytest

from cerebelum_provider.client import ExecutionClient
from cerebelum_provider.exceptions import ExecutionNotFoundError
from tests.peers.peer_shape import assert_same_status, peer_shape
from tests.peers.sdk_peer import sdk_listing, sdk_resume, sdk_statuses


@pytest.fixture
def mixed_core(core):
    core.define_workflow("orders", ["validate", "charge", "ship", "notify"])
    core.define_workflow("billing", ["bill"])
    ids = {
        "running": core.start_execution("orders", inputs={"n": 123, "name": "a", "ratio": 0.25}),
        "completed": core.start_execution("orders", inputs={"items": [1, 2, {"sku": "x"}]}),
        "failed": core.start_execution("orders", fail_at="ship", error_message="card declined"),
        "sleeping": core.start_execution("orders", sleep_at="charge", sleep_ms=90_000),
        "waiting": core.start_execution("orders", approval_at="notify"),
        "billing": core.start_execution("billing"),
    }
    core.advance(steps=1, execution_id=ids["running"])
    for name in ("completed", "failed", "sleeping", "waiting"):
        core.run_until_settled(ids[name])
    return core, ids


async def test_same_statuses_and_listing(mixed_core):
    core, ids = mixed_core
    theirs = await sdk_statuses(core.address, list(ids.values()))
    theirs_page = await sdk_listing(core.address, workflow="orders", limit=100)
    theirs_unfiltered = await sdk_listing(core.address)
    async with ExecutionClient(core.address) as client:
        ours = [peer_shape(await client.get_execution_status(i)) for i in ids.values()]
        ours_page, total, has_more = await client.list_executions(workflow_name="orders", limit=100)
        ours_unfiltered = await client.list_executions()

    assert [t["status"] for t in theirs] == [
        "EXECUTION_RUNNING",
        "EXECUTION_COMPLETED",
        "EXECUTION_FAILED",
        "EXECUTION_SLEEPING",
        "EXECUTION_WAITING_FOR_APPROVAL",
        "EXECUTION_RUNNING",
    ]
    for their_status, our_status in zip(theirs, ours, strict=True):
        assert_same_status(their_status, our_status)

    assert (theirs_page["total_count"], theirs_page["has_more"]) == (total, has_more) == (5, False)
    for their_status, our_status in zip(theirs_page["executions"], ours_page, strict=True):
        assert_same_status(their_status, peer_shape(our_status))

    # The SDK's "no filter" sends workflow_name="" and Core matches nothing; ours lists everything.
    assert theirs_unfiltered == {"executions": [], "total_count": 0, "has_more": False}
    assert ours_unfiltered[1] == 6


async def test_unknown_id_and_resume(mixed_core):
    core, ids = mixed_core
    [their_unknown] = await sdk_statuses(core.address, ["no-such-id"])
    assert their_unknown["error"]["kind"] == "not_found"
    assert their_unknown["status"] == "EXECUTION_STATE_UNSPECIFIED"

    their_first = await sdk_resume(core.address, ids["failed"])
    async with ExecutionClient(core.address) as client:
        with pytest.raises(ExecutionNotFoundError):
            await client.get_execution_status("no-such-id")
        our_second = await client.resume_execution(ids["failed"])
        our_completed = await client.resume_execution(ids["completed"])
    their_completed = await sdk_resume(core.address, ids["completed"])
    assert (their_first, our_second) == ("resumed", "already_running")
    assert our_completed == their_completed == "failed_to_resume"
    assert core.resume_count(ids["failed"]) == 1
