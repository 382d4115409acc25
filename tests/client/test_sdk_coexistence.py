"""The published cerebelum-sdk and our client load into one interpreter, in either order, and both
work there against one Core emulator (running in that interpreter too).

Both register ``cerebelum.worker.*`` protobuf messages; the SDK in protobuf's default pool, ours in
a pool of its own (scripts/generate_protos.py). Each order runs in a fresh interpreter
(tests/peers/coexistence_peer.py), because the default pool is process-wide: in this pytest
process the first import has long happened. Each client starts one execution, and our blocking
client, our asyncio client and the SDK's client each read both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers.peer_shape import assert_same_status

ROOT = Path(__file__).resolve().parents[2]
PEER = ROOT / "tests" / "peers" / "coexistence_peer.py"
OURS = "cerebelum_provider.proto.worker_service_pb2"
SDKS = "cerebelum.proto.worker_service_pb2"


def run_peer(order: str) -> dict:
    # This checkout's cerebelum_provider, whichever one the interpreter would find on its own.
    path = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run(
        [sys.executable, str(PEER), order], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, f"{order} failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module", params=["sdk-first", "ours-first"])
def answer(request):
    return request.param, run_peer(request.param)


def test_both_load_in_the_order_asked(answer):
    order, seen = answer
    assert seen["loaded_first"] == ([SDKS, OURS] if order == "sdk-first" else [OURS, SDKS])
    assert seen["pools"] == {"sdk_in_default_pool": True, "ours_in_default_pool": False}


def test_all_three_clients_read_the_same_executions(answer):
    _, seen = answer
    ours_started, sdk_started = seen["started"]
    assert [s["execution_id"] for s in seen["ours_sync"]] == [ours_started, sdk_started]
    assert seen["ours_async"] == seen["ours_sync"]
    for theirs, ours in zip(seen["sdk"], seen["ours_sync"], strict=True):
        assert_same_status(theirs, ours)

    ours_run, sdk_run = seen["ours_sync"]
    assert (ours_run["status"], sdk_run["status"]) == ("EXECUTION_COMPLETED", "EXECUTION_RUNNING")
    assert [step["step_name"] for step in ours_run["completed_steps"]] == ["validate", "charge", "ship"]
    assert sdk_run["current_step_name"] == "charge"
    # Inputs sent by each client (Structs from either pool) come back to both, value for value.
    assert [ours_run["inputs"], sdk_run["inputs"]] == seen["sent_inputs"]


def test_both_list_the_two_executions(answer):
    _, seen = answer
    assert seen["listed_ids"]["ours"] == seen["listed_ids"]["sdk"] == sorted(seen["started"])
    assert seen["listed_totals"] == {"ours": 2, "sdk": 2}
