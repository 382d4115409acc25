"""What one poll of ``CerebelumExecutionEventTrigger`` costs, against Core's own list cost.

Core rebuilds every listed execution from its events, so listing the N executions in FAILED is
N replays; that is the floor of any poll that must see every failed execution. For N failed
executions over each API this measures: listing them all with the client (``iter_executions``,
Core's cost), one trigger poll (the same listing plus entry markers), the watcher's own work on
one snapshot (digests and comparison, no Core call), the size of the state it stores, and how
many list calls ten watchers make in one interval when they share the poll and when they do not.

    .venv/bin/python bench/bench_event_trigger.py [--sizes 100,1000,5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import machine, median, table, write_section  # noqa: E402

WORKFLOW = "orders"
WATCHERS = 10


class _State:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return json.loads(self.values[key]) if key in self.values else default

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = json.dumps(value)


async def _timed(coroutine_factory, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await coroutine_factory()
        times.append(time.perf_counter() - started)
    return median(times)


async def _measure(core: Any, api: str, size: int, repeat: int) -> dict[str, Any]:
    from cerebelum_provider.client import ExecutionClient
    from cerebelum_provider.triggers.cerebelum import CerebelumExecutionEventTrigger
    from cerebelum_provider.triggers.execution_events import _Poller

    address = core.http_url if api == "http" else core.address
    os.environ["AIRFLOW_CONN_CEREBELUM_DEFAULT"] = (
        f"cerebelum://127.0.0.1:{core.http_port}?api=http" if api == "http" else f"cerebelum://{core.address}?api=grpc"
    )
    async with ExecutionClient(address) as client:

        async def list_all() -> None:
            listed = [execution async for execution in client.iter_executions(WORKFLOW, "FAILED")]
            assert len(listed) == size, len(listed)

        list_seconds = await _timed(list_all, repeat)

    poller = _Poller("cerebelum_default", WORKFLOW, ("EXECUTION_FAILED",))
    snapshot = await poller.snapshot()
    assert len(snapshot["entries"]) == size
    poll_seconds = await _timed(poller.snapshot, repeat)

    # The watcher's own work: a first snapshot (baseline), then the same one again (no change).
    trigger = CerebelumExecutionEventTrigger(workflow_name=WORKFLOW, poll_interval=60)
    trigger.asset_state_store = state = _State()

    async def snapshots():
        for _ in range(repeat + 1):
            yield snapshot

    started = time.perf_counter()
    async for _ in trigger.filter_shared_stream(snapshots()):
        pass
    filter_seconds = (time.perf_counter() - started) / (repeat + 1)
    stored_bytes = sum(len(value) for value in state.values.values())

    # Ten watchers for one interval: each on its own poll, or all fed by one shared poll.
    before = core.call_counts().get("ListExecutions", 0)
    for _ in range(WATCHERS):
        await _Poller("cerebelum_default", WORKFLOW, ("EXECUTION_FAILED",)).snapshot()
    alone_calls = core.call_counts().get("ListExecutions", 0) - before
    before = core.call_counts().get("ListExecutions", 0)
    await _Poller("cerebelum_default", WORKFLOW, ("EXECUTION_FAILED",)).snapshot()
    shared_calls = core.call_counts().get("ListExecutions", 0) - before
    return {
        "api": api,
        "size": size,
        "list_ms": list_seconds * 1000,
        "poll_ms": poll_seconds * 1000,
        "filter_ms": filter_seconds * 1000,
        "stored_bytes": stored_bytes,
        "alone_calls": alone_calls,
        "shared_calls": shared_calls,
    }


def run(sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    from cerebelum_provider.emulator import CoreEmulator

    results = []
    for size in sizes:
        with CoreEmulator() as core:
            for _ in range(size):
                core.start_execution(WORKFLOW, fail_at=0)
            core.advance()
            for api in ("grpc", "http"):
                results.append(asyncio.run(_measure(core, api, size, repeat)))
                print(json.dumps(results[-1]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="failed executions, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions (median reported)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    facts = machine()
    results = run(sizes, args.repeat)
    rows = [
        [
            result["api"],
            result["size"],
            f"{result['list_ms']:.0f}",
            f"{result['poll_ms']:.0f}",
            f"{result['poll_ms'] / result['list_ms']:.2f}",
            f"{result['filter_ms']:.1f}",
            result["stored_bytes"],
            f"{result['alone_calls']} / {result['shared_calls']}",
        ]
        for result in results
    ]
    command = "python bench/bench_event_trigger.py" + (
        f" --sizes {args.sizes}" if args.sizes != "100,1000,5000" else ""
    )
    markdown = "\n".join(
        [
            "### Event trigger: one poll against Core's list cost (N executions in FAILED)",
            "",
            f"Command: `{command}` ({facts['date']}, load average at start {facts.get('load_average')}); "
            "the emulator in the benchmark's process, median of "
            f"{args.repeat}.",
            "",
            table(
                [
                    "API",
                    "N failed",
                    "Core list, all pages (ms)",
                    "one trigger poll (ms)",
                    "poll / list",
                    "watcher's work per snapshot (ms)",
                    "stored state (bytes)",
                    f"list calls per interval, {WATCHERS} watchers alone / shared",
                ],
                rows,
            ),
            "",
            "- A poll is Core's list of every execution in the watched states (N replays in Core, "
            "N/100 pages): its cost is Core's list cost, and grows with N, not with the number of "
            "watchers when they share it (`shared_stream_key`).",
            "- The watcher's own work (a 6-byte digest per listed execution, a set comparison) and its "
            "stored state (8 base64 characters per execution) are small next to the listing.",
        ]
    )
    write_section("event_trigger", markdown)


if __name__ == "__main__":
    main()
