"""``[cerebelum] triggerer_gc_freeze``: one ``gc.freeze()`` when the first Cerebelum trigger of a
process runs, only when configured.

Each case runs in its own Python process (the freeze is process-wide and happens once), which
starts an emulator and runs real triggers to their end, as a triggerer's trigger loop would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import asyncio, gc, json, os
from cerebelum_provider.emulator import CoreEmulator
from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger
from cerebelum_provider.triggers.execution_events import CerebelumExecutionEventTrigger

with CoreEmulator() as core:
    core.define_workflow("orders", ["validate"])
    execution_id = core.start_execution("orders")
    core.run_until_settled(execution_id)
    os.environ["AIRFLOW_CONN_CEREBELUM_DEFAULT"] = f"cerebelum://{core.address}?api=grpc"

    async def run_trigger():
        trigger = CerebelumExecutionTrigger(execution_id, poll_interval=0.01)
        return [event.payload["status"] async for event in trigger.run()]

    async def first_event_poll():
        kwargs = CerebelumExecutionEventTrigger(workflow_name="orders", poll_interval=0.01).serialize()[1]
        stream = CerebelumExecutionEventTrigger.open_shared_stream(kwargs)
        return (await stream.__anext__())["trusted"]

    counts = {"before": gc.get_freeze_count()}
    counts["events"] = asyncio.run(run_trigger())
    counts["after_first"] = gc.get_freeze_count()
    kept = [[] for _ in range(20_000)]  # a second freeze would take these in too
    asyncio.run(run_trigger())
    asyncio.run(first_event_poll())
    counts["after_more"] = gc.get_freeze_count()
print(json.dumps(counts))
"""


def run_child(setting: str | None) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "AIRFLOW__CEREBELUM__TRIGGERER_GC_FREEZE"}
    if setting is not None:
        env["AIRFLOW__CEREBELUM__TRIGGERER_GC_FREEZE"] = setting
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("setting", [None, "False"])
def test_nothing_is_frozen_unless_configured(setting):
    counts = run_child(setting)
    assert counts["events"] == ["success"]
    assert counts["before"] == counts["after_first"] == counts["after_more"] == 0


def test_configured_the_first_trigger_freezes_the_heap_once():
    counts = run_child("True")
    assert counts["events"] == ["success"]
    assert counts["before"] == 0
    # Airflow and the provider are loaded by then: tens of thousands of objects at least.
    assert counts["after_first"] > 50_000
    # Later triggers, of either class, do not freeze again: the 20,000 lists made in between stay
    # in sight of the collector (the frozen set only shrinks, as frozen objects are freed).
    assert counts["after_more"] <= counts["after_first"]
