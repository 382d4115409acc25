"""Coalesced polling against Core's rate limit: N waits on one workflow, per-execution vs coalesced.

N ``CerebelumExecutionTrigger``s run in one event loop of this process, each consumed by its own
task as Airflow's triggerer runs them (``TriggerRunner.run_trigger``), over Core's REST API to an
emulator in its own process with Core's rate limit on (1,000 requests a calendar minute, then
429 with ``retry-after: 60``). The executions complete at a steady rate from the start. Two modes,
each on a fresh emulator:

- per_execution: ``coalesce_polling=false`` and a request budget too large to bind: every wait
  reads its own execution every interval, as before coalescing;
- coalesced: the defaults (``coalesce_polling`` on, ``request_budget`` 900).

Reported per mode: requests a minute Core received and how many it refused (429), time from an
execution completing to its trigger's event (p50, p99), this process's CPU seconds and resident
memory, and the worst event-loop lag (a 10 ms ticker's largest overshoot).

Not a real ``airflow triggerer`` process: the triggers run in this benchmark's loop (the issue's
Airflow-process measurement is left to a later round; see RESULTS.md).

    .venv/bin/python bench/bench_coalesced_polling.py --waits 2000 --duration 120
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

from _support import LoopLag, RemoteCore, machine, percentile, table, write_section

MODES = ("per_execution", "coalesced")


async def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger

    with RemoteCore.start(latency=args.latency) as core:
        core.set_rate_limit(args.rate_limit)
        port = core.rest_url().rsplit(":", 1)[1]
        extras = (
            "api=http&coalesce_polling=false&request_budget=1000000000"
            if mode == "per_execution"
            else "api=http"
        )
        os.environ["AIRFLOW_CONN_CEREBELUM_DEFAULT"] = f"cerebelum://127.0.0.1:{port}?{extras}"
        ids = core.seed("orders", args.waits)
        completed_at: dict[str, float] = {}
        detected_at: dict[str, float] = {}

        async def consume(trigger: CerebelumExecutionTrigger) -> None:
            async for event in trigger.run():
                detected_at[event.payload["execution_id"]] = time.time()

        lag = LoopLag().start()
        started = time.monotonic()
        cpu_start = time.process_time()
        tasks = [
            asyncio.ensure_future(consume(CerebelumExecutionTrigger(eid, poll_interval=args.interval)))
            for eid in ids
        ]
        # After one interval every wait has polled once: measure from then on.
        await asyncio.sleep(args.interval)
        lag.reset()
        counts_start = core.call_counts()
        refused_start = core.rate_limited_count()
        window_start = time.monotonic()
        order = list(ids)
        random.Random(7).shuffle(order)
        spacing = 1.0 / args.completions_per_second
        next_completion = time.monotonic()
        while time.monotonic() - window_start < args.duration:
            if time.monotonic() >= next_completion and order:
                execution_id = order.pop()
                await asyncio.to_thread(core.complete, execution_id)
                completed_at[execution_id] = time.time()
                next_completion += spacing
            await asyncio.sleep(0.05)
        window = time.monotonic() - window_start
        counts_end = core.call_counts()
        refused = core.rate_limited_count() - refused_start
        cpu = time.process_time() - cpu_start
        rss = psutil.Process().memory_info().rss
        worst_lag = lag.worst
        await lag.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    requests = sum(counts_end.values()) - sum(counts_start.values())
    latencies = [detected_at[eid] - at for eid, at in completed_at.items() if eid in detected_at]
    return {
        "mode": mode,
        "waits": args.waits,
        "window_s": round(window, 1),
        # The first interval, when every wait polls for the first time: the start-up burst.
        "startup_requests": sum(counts_start.values()),
        "startup_429": refused_start,
        "requests_per_min": round(requests * 60 / window),
        "refused_429_per_min": round(refused * 60 / window),
        "completed": len(completed_at),
        "detected": len(latencies),
        "p50_s": round(percentile(latencies, 0.5), 1) if latencies else None,
        "p99_s": round(percentile(latencies, 0.99), 1) if latencies else None,
        "cpu_s": round(cpu, 1),
        "rss_mb": round(rss / 2**20),
        "worst_lag_ms": round(worst_lag * 1000),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--waits", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=120.0, help="measured window, seconds")
    parser.add_argument("--completions-per-second", type=float, default=2.0)
    parser.add_argument("--rate-limit", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.005)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    facts = machine()
    results = [asyncio.run(run_mode(mode, args)) for mode in args.modes.split(",")]
    for result in results:
        print(result, flush=True)
    if args.no_write:
        return
    header = [
        "mode",
        "waits",
        "requests/min",
        "429/min",
        "start-up requests (first interval)",
        "start-up 429",
        "completed",
        "detected",
        "p50 (s)",
        "p99 (s)",
        "CPU (s)",
        "RSS (MB)",
        "worst lag (ms)",
    ]
    rows = [
        [
            r["mode"],
            r["waits"],
            r["requests_per_min"],
            r["refused_429_per_min"],
            r["startup_requests"],
            r["startup_429"],
            r["completed"],
            r["detected"],
            r["p50_s"],
            r["p99_s"],
            r["cpu_s"],
            r["rss_mb"],
            r["worst_lag_ms"],
        ]
        for r in results
    ]
    command = "python bench/bench_coalesced_polling.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    write_section(
        "coalesced_polling",
        f"### Coalesced polling against Core's rate limit\n\nCommand: `{command}` ({facts['date']}, load "
        f"average at start {facts['load_average']}). {args.waits} triggers on one workflow, "
        f"{args.interval:g} s interval, REST to the emulator in its own process with "
        f"{args.latency * 1000:g} ms per call and Core's rate limit ({args.rate_limit} a minute); "
        f"{args.completions_per_second:g} "
        f"executions completing a second; measured over {args.duration:g} s after one interval. CPU and RSS "
        "are this process's (the triggers and their client). Triggers in the benchmark's own event loop, "
        "not an `airflow triggerer` process.\n\n" + table(header, rows),
    )


if __name__ == "__main__":
    main()
