"""Sleep-aware polling: RPCs spent on sleeping executions, and how soon a wake-up is seen.

Part 1, the RPC count: N executions sleeping for 10 minutes, each watched by a
``CerebelumExecutionTrigger`` (poll interval 1 s) for 60 s, against the same trigger with
fixed polling (its sleep-aware delay replaced by the plain poll interval). Both fleets run in one
event loop at the same time, each against its own emulator process, whose ``call_counts`` are
the RPCs sent. Goal: at most 2 per execution for ours, against ~60 for fixed polling.

Part 2, the wake-up: N executions whose sleeps (spread over 5-35 s) end during the window, on an
emulator running on real time. The trigger is told that RUNNING is a success state, so its event
is the moment it saw the execution awake; the delay is that moment minus the sleep's end
(``sleep_started_at + duration``; the emulator's clock ticks every 0.1 s, which is included).
Goal: every wake-up seen within one poll interval (plus the round trip).

    .venv/bin/python bench/bench_sleep_aware.py            # N=2000, 60 s
    .venv/bin/python bench/bench_sleep_aware.py --quick    # N=200, 15 s
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import RemoteCore, machine, median, percentile, table, write_section  # noqa: E402

POLL_INTERVAL = 1.0


def trigger_classes():
    from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger

    class FixedIntervalTrigger(CerebelumExecutionTrigger):
        """The same trigger, polling every interval whatever the execution does (the baseline)."""

        def _next_poll_delay(self, status: Any) -> float:
            return self.poll_interval

    return CerebelumExecutionTrigger, FixedIntervalTrigger


async def watch(trigger_class, execution_ids: list[str], conn_id: str, **kwargs: Any) -> list[tuple[float, Any]]:
    """Run one trigger per id as the triggerer does; return (time seen, event) for each event."""
    events: list[tuple[float, Any]] = []

    async def run_one(execution_id: str) -> None:
        trigger = trigger_class(execution_id=execution_id, cerebelum_conn_id=conn_id, poll_interval=POLL_INTERVAL, **kwargs)
        async for event in trigger.run():
            events.append((time.time(), event))

    tasks = [asyncio.create_task(run_one(execution_id)) for execution_id in execution_ids]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return events


def rpc_count(count: int, window: float) -> dict[str, Any]:
    ours_class, fixed_class = trigger_classes()
    with RemoteCore.start() as ours_core, RemoteCore.start() as fixed_core:
        ours_ids = ours_core.seed("naps", count, "sleeping", sleep_ms=600_000)
        fixed_ids = fixed_core.seed("naps", count, "sleeping", sleep_ms=600_000)
        os.environ["AIRFLOW_CONN_CEREBELUM_OURS"] = f"cerebelum://{ours_core.address}"
        os.environ["AIRFLOW_CONN_CEREBELUM_FIXED"] = f"cerebelum://{fixed_core.address}"

        async def both() -> None:
            fleets = asyncio.gather(
                watch(ours_class, ours_ids, "cerebelum_ours"), watch(fixed_class, fixed_ids, "cerebelum_fixed")
            )
            try:
                await asyncio.wait_for(fleets, window)
            except asyncio.TimeoutError:
                pass

        asyncio.run(both())
        ours_rpcs = ours_core.call_counts().get("GetExecutionStatus", 0)
        fixed_rpcs = fixed_core.call_counts().get("GetExecutionStatus", 0)
    return {"ours_rpcs": ours_rpcs, "fixed_rpcs": fixed_rpcs}


def wake_up(count: int, shortest: float, longest: float) -> dict[str, Any]:
    ours_class, _ = trigger_classes()
    # Real time; steps move only once an hour, so an execution that woke stays RUNNING.
    with RemoteCore.start(step_seconds=3600) as core:
        rng = random.Random(6)
        ids = []
        for _ in range(count):
            ids += core.seed("wakes", 1, "sleeping", sleep_ms=int(rng.uniform(shortest, longest) * 1000))
        ends = core.sleep_ends(ids)
        os.environ["AIRFLOW_CONN_CEREBELUM_WAKE"] = f"cerebelum://{core.address}"
        events = asyncio.run(watch(ours_class, ids, "cerebelum_wake", success_states=["EXECUTION_RUNNING"]))
        rpcs = core.call_counts().get("GetExecutionStatus", 0)
        delays = []
        for seen_at, event in events:
            if event.payload["status"] != "success":
                continue
            delays.append(seen_at - ends[event.payload["execution_id"]])
    return {"delays": delays, "events": len(events), "rpcs": rpcs, "count": count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=200, 15 s window")
    parser.add_argument("--executions", type=int, default=None, help="N (default 2000; 200 with --quick)")
    parser.add_argument("--window", type=float, default=None, help="seconds watched (default 60; 15 with --quick)")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    count = args.executions or (200 if args.quick else 2000)
    window = args.window or (15.0 if args.quick else 60.0)
    facts = machine()
    counts = rpc_count(count, window)
    shortest, longest = (3.0, 10.0) if args.quick else (5.0, 35.0)
    wakes = wake_up(count, shortest, longest)
    report(args, facts, count, window, counts, wakes, (shortest, longest))


def report(args, facts, count, window, counts, wakes, spread) -> None:
    delays = wakes["delays"]
    fixed_expected = window / POLL_INTERVAL
    rows = [
        ["ours: CerebelumExecutionTrigger (sleep-aware)", counts["ours_rpcs"], f"{counts['ours_rpcs'] / count:.2f}"],
        ["fixed polling every 1 s (same trigger)", counts["fixed_rpcs"], f"{counts['fixed_rpcs'] / count:.2f}"],
    ]
    worst = max(delays) if delays else float("nan")
    command = "python bench/bench_sleep_aware.py" + (" --quick" if args.quick else "")
    lines = [
        f"### 2. Sleep-aware polling: {count} executions sleeping 10 min, watched {window:g} s, poll {POLL_INTERVAL:g} s",
        "",
        f"Command: `{command}` ({facts['date']}, load average at start {facts['load_average']}).",
        "",
        table(["fleet", "GetExecutionStatus RPCs", "RPCs per execution"], rows),
        "",
        f"- ours: **{counts['ours_rpcs'] / count:.2f} RPCs per execution** (goal <= 2) against "
        f"{counts['fixed_rpcs'] / count:.1f} for fixed polling (~{fixed_expected:.0f} expected); "
        f"**{counts['fixed_rpcs'] / max(counts['ours_rpcs'], 1):.0f}x fewer**.",
        f"- wake-up: {wakes['count']} executions whose sleeps ({spread[0]:g}-{spread[1]:g} s) end in the window, "
        f"emulator on real time: {len(delays)} wake-ups seen; delay from the sleep's end to the trigger seeing "
        f"it awake: median **{median(delays) * 1000:.0f} ms**, p95 {percentile(delays, 0.95) * 1000:.0f} ms, "
        f"worst **{worst * 1000:.0f} ms** (goal: within one poll interval, {POLL_INTERVAL * 1000:.0f} ms, plus the "
        f"round trip and the emulator's 100 ms clock tick); "
        f"{wakes['rpcs'] / wakes['count']:.2f} RPCs per execution.",
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("sleep_aware", "\n".join(lines))


if __name__ == "__main__":
    main()
