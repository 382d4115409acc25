"""Detection latency: from the emulator marking an execution COMPLETED to the trigger's event.

N ``CerebelumExecutionTrigger``s (poll interval 1 s) watch N RUNNING executions in one event
loop, as the triggerer runs them, against an emulator in its own process (latency per call as
given). After a warm-up the emulator completes them one by one, spread over a stretch of time,
and records when it completed each (wall clock, same machine). The latency of an execution is
the time its trigger yielded the event minus that moment. Goal: worst under poll interval + 100 ms.

    .venv/bin/python bench/bench_detection_latency.py            # N=1000
    .venv/bin/python bench/bench_detection_latency.py --quick    # N=100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import RemoteCore, LoopLag, machine, median, percentile, write_section  # noqa: E402

POLL_INTERVAL = 1.0


async def measure(core: RemoteCore, execution_ids: list[str], spread: float) -> dict:
    from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger

    seen: dict[str, float] = {}
    statuses: dict[str, str] = {}

    async def run_one(execution_id: str) -> None:
        trigger = CerebelumExecutionTrigger(execution_id=execution_id, poll_interval=POLL_INTERVAL)
        async for event in trigger.run():
            seen[execution_id] = time.time()
            statuses[execution_id] = event.payload["status"]

    lag = LoopLag().start()
    tasks = [asyncio.create_task(run_one(execution_id)) for execution_id in execution_ids]
    await asyncio.sleep(3 * POLL_INTERVAL)
    lag.reset()
    # The control call blocks, so it runs in a thread: the event loop must keep polling meanwhile.
    completed_at = await asyncio.to_thread(core.complete_all, execution_ids, spread / len(execution_ids))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    await lag.stop()
    latencies = [seen[execution_id] - completed_at[execution_id] for execution_id in execution_ids]
    return {"latencies": latencies, "statuses": statuses, "worst_lag": lag.worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=100")
    parser.add_argument("--executions", type=int, default=None, help="N (default 1000; 100 with --quick)")
    parser.add_argument("--latency", type=float, default=0.005, help="emulator latency per call, s")
    parser.add_argument("--spread", type=float, default=None, help="seconds over which completions are spread (default 10)")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    count = args.executions or (100 if args.quick else 1000)
    spread = args.spread or (3.0 if args.quick else 10.0)
    facts = machine()
    with RemoteCore.start(latency=args.latency) as core:
        execution_ids = core.seed("detect", count, "running")
        os.environ["AIRFLOW_CONN_CEREBELUM_DEFAULT"] = f"cerebelum://{core.address}?api=grpc"
        result = asyncio.run(measure(core, execution_ids, spread))
    latencies = result["latencies"]
    worst = max(latencies)
    goal = POLL_INTERVAL + 0.1
    success = sum(1 for status in result["statuses"].values() if status == "success")
    command = "python bench/bench_detection_latency.py" + (" --quick" if args.quick else "")
    lines = [
        f"### 5. Detection latency: {count} executions, poll {POLL_INTERVAL:g} s, emulator latency "
        f"{args.latency * 1000:g} ms, completions spread over {spread:g} s",
        "",
        f"Command: `{command}` ({facts['date']}, load average at start {facts['load_average']}).",
        "",
        f"- events: {success}/{count} success; latency from COMPLETED to the trigger's event: "
        f"median **{median(latencies) * 1000:.0f} ms**, p95 {percentile(latencies, 0.95) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, worst **{worst * 1000:.0f} ms** "
        f"(goal: worst < {goal * 1000:.0f} ms: {'met' if worst < goal else 'MISSED'}).",
        f"- worst event-loop lag while they fired: {result['worst_lag'] * 1000:.0f} ms.",
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("detection_latency", "\n".join(lines))


if __name__ == "__main__":
    main()
