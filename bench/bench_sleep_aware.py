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


async def watch(
    trigger_class, execution_ids: list[str], conn_id: str, events: list[tuple[float, Any]], **kwargs: Any
) -> None:
    """Run one trigger per id as the triggerer does, their starts spread over one poll interval
    (as deferrals reach a triggerer over time); append (time seen, event) to ``events``."""

    async def run_one(delay: float, execution_id: str) -> None:
        await asyncio.sleep(delay)
        trigger = trigger_class(
            execution_id=execution_id, cerebelum_conn_id=conn_id, poll_interval=POLL_INTERVAL, **kwargs
        )
        async for event in trigger.run():
            events.append((time.time(), event))

    tasks = [
        asyncio.create_task(run_one(POLL_INTERVAL * index / len(execution_ids), execution_id))
        for index, execution_id in enumerate(execution_ids)
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def rpc_count(count: int, window: float) -> dict[str, Any]:
    """Each fleet alone for ``window`` seconds (one after the other) on its own emulator."""
    ours_class, fixed_class = trigger_classes()
    result: dict[str, Any] = {}
    for name, trigger_class in (("ours", ours_class), ("fixed", fixed_class)):
        with RemoteCore.start() as core:
            execution_ids = core.seed("naps", count, "sleeping", sleep_ms=600_000)
            os.environ["AIRFLOW_CONN_CEREBELUM_NAPS"] = f"cerebelum://{core.address}?api=grpc"
            events: list[tuple[float, Any]] = []

            async def fleet() -> None:
                try:
                    fleet_done = watch(trigger_class, execution_ids, "cerebelum_naps", events)
                    await asyncio.wait_for(fleet_done, window)
                except asyncio.TimeoutError:
                    pass

            asyncio.run(fleet())
            result[f"{name}_rpcs"] = core.call_counts().get("GetExecutionStatus", 0)
            result[f"{name}_ended"] = ended_early(events)
    return result


def ended_early(events: list[tuple[float, Any]]) -> str:
    """How many triggers ended before the window did, by status and error (one line)."""
    reasons: dict[str, int] = {}
    for _, event in events:
        message = event.payload["message"]
        reason = f"{event.payload['status']} ({message.rsplit(': ', 1)[-1][:40]})"
        reasons[reason] = reasons.get(reason, 0) + 1
    return ", ".join(f"{count} {reason}" for reason, count in reasons.items()) or "none"


def wake_up(count: int, shortest: float, longest: float) -> dict[str, Any]:
    ours_class, _ = trigger_classes()
    # Real time; steps move only once an hour, so an execution that woke stays RUNNING.
    with RemoteCore.start(step_seconds=3600) as core:
        rng = random.Random(6)
        ids = []
        for _ in range(count):
            ids += core.seed("wakes", 1, "sleeping", sleep_ms=int(rng.uniform(shortest, longest) * 1000))
        ends = core.sleep_ends(ids)
        os.environ["AIRFLOW_CONN_CEREBELUM_WAKE"] = f"cerebelum://{core.address}?api=grpc"
        events: list[tuple[float, Any]] = []
        asyncio.run(watch(ours_class, ids, "cerebelum_wake", events, success_states=["EXECUTION_RUNNING"]))
        rpcs = core.call_counts().get("GetExecutionStatus", 0)
        delays = []
        for seen_at, event in events:
            if event.payload["status"] != "success":
                continue
            delays.append(seen_at - ends[event.payload["execution_id"]])
    return {"delays": delays, "events": len(events), "rpcs": rpcs, "count": count, "ended": ended_early(
        [(seen, event) for seen, event in events if event.payload["status"] != "success"]
    )}


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
        ["ours: CerebelumExecutionTrigger (sleep-aware)", counts["ours_rpcs"], f"{counts['ours_rpcs'] / count:.2f}",
         counts["ours_ended"]],
        ["fixed polling every 1 s (same trigger)", counts["fixed_rpcs"], f"{counts['fixed_rpcs'] / count:.2f}",
         counts["fixed_ended"]],
    ]
    worst = max(delays) if delays else float("nan")
    command = "python bench/bench_sleep_aware.py" + (" --quick" if args.quick else "")
    lines = [
        f"### 2. Sleep-aware polling: {count} executions sleeping 10 min, watched {window:g} s, poll {POLL_INTERVAL:g} s",
        "",
        f"Command: `{command}` ({facts['date']}, load average at start {facts['load_average']}).",
        "",
        table(["fleet", "GetExecutionStatus RPCs", "RPCs per execution", "triggers that ended early"], rows),
        "",
        f"- ours: **{counts['ours_rpcs'] / count:.2f} RPCs per execution** (goal <= 2) against "
        f"{counts['fixed_rpcs'] / count:.1f} for fixed polling (~{fixed_expected:.0f} expected); "
        f"**{counts['fixed_rpcs'] / max(counts['ours_rpcs'], 1):.0f}x fewer**.",
        f"- wake-up: {wakes['count']} executions whose sleeps ({spread[0]:g}-{spread[1]:g} s) end in the window, "
        f"emulator on real time: {len(delays)} wake-ups seen; delay from the sleep's end to the trigger seeing "
        f"it awake: median **{median(delays) * 1000:.0f} ms**, p95 {percentile(delays, 0.95) * 1000:.0f} ms, "
        f"worst **{worst * 1000:.0f} ms** (goal: within one poll interval, {POLL_INTERVAL * 1000:.0f} ms, plus the "
        f"round trip and the emulator's 100 ms clock tick); "
        f"{wakes['rpcs'] / wakes['count']:.2f} RPCs per execution; triggers that ended otherwise: {wakes['ended']}.",
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("sleep_aware", "\n".join(lines))


if __name__ == "__main__":
    main()
