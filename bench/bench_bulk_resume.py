"""Bulk resume: N failed executions, emulator latency per call, against two sequential baselines.

- seed loop: the seed project's "Resume All Failed Executions" written with our client: one
  ``list_executions(status=FAILED, limit=100)``, then a sequential resume of each (so it only
  ever resumes the first 100);
- sequential full loop: page through every failed execution (offset pages of 100), then resume
  each one after the other. At the default size it runs on a sample (``--sequential-sample``)
  and its time is extrapolated linearly to N (listing and resuming are both linear in N);
- ours: ``cerebelum_provider.bulk.resume_matching`` (what ``CerebelumBulkResumeOperator`` runs),
  at the operator's default ``max_concurrency`` and at a higher one.

Each run works on its own workflow name, freshly seeded, in one emulator process (so the client
CPU is this process's alone). Reported: wall time, resumed count, resumes per execution (from
the emulator's ``resume_count``), and ours' peak Python memory (tracemalloc, separate runs) for
several N, to show it grows with the ids it must remember and nothing else.

    .venv/bin/python bench/bench_bulk_resume.py            # N=10,000, latency 5 ms
    .venv/bin/python bench/bench_bulk_resume.py --quick    # N=1,000
    .venv/bin/python bench/bench_bulk_resume.py --latency 0.05 --executions 2000 --sequential-sample 200 --no-memory
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import RemoteCore, machine, table, write_section  # noqa: E402

from cerebelum_provider.bulk import resume_matching  # noqa: E402
from cerebelum_provider.client import ExecutionClient  # noqa: E402
from cerebelum_provider.models import ExecutionState  # noqa: E402

OPERATOR_DEFAULT_CONCURRENCY = 16


async def seed_loop(client: ExecutionClient, workflow: str) -> int:
    """The seed's loop: one page of 100 failed executions, resumed one after the other."""
    executions, _, _ = await client.list_executions(
        workflow_name=workflow, status=ExecutionState.FAILED, limit=100
    )
    resumed = 0
    for execution in executions:
        if await client.resume_execution(execution.execution_id) == "resumed":
            resumed += 1
    return resumed


async def sequential_full_loop(client: ExecutionClient, workflow: str) -> int:
    """Every failed execution, listed by offset pages first, then resumed one after the other."""
    ids: list[str] = []
    offset = 0
    while True:
        page, _, has_more = await client.list_executions(
            workflow_name=workflow, status=ExecutionState.FAILED, limit=100, offset=offset
        )
        ids += [execution.execution_id for execution in page]
        offset += len(page)
        if not has_more or not page:
            break
    resumed = 0
    for execution_id in ids:
        if await client.resume_execution(execution_id) == "resumed":
            resumed += 1
    return resumed


async def ours(client: ExecutionClient, workflow: str, concurrency: int) -> int:
    summary = await resume_matching(client, workflow_name=workflow, max_concurrency=concurrency)
    return len(summary.resumed)


def run_case(core: RemoteCore, name: str, count: int, job, *, trace_memory: bool = False) -> dict[str, Any]:
    workflow = f"bulk-{name}-{count}"
    ids = core.seed(workflow, count, "failed")
    before = core.call_counts()
    core_cpu_before, client_cpu_before = core.cpu_time(), time.process_time()

    async def timed() -> tuple[int, float]:
        async with ExecutionClient(core.address) as client:
            await client.list_executions(limit=1)  # open the channel outside the timing
            started = time.perf_counter()
            resumed = await job(client, workflow)
            return resumed, time.perf_counter() - started

    if trace_memory:
        tracemalloc.start()
    resumed, wall = asyncio.run(timed())
    peak = tracemalloc.get_traced_memory()[1] if trace_memory else None
    if trace_memory:
        tracemalloc.stop()
    client_cpu, core_cpu = time.process_time() - client_cpu_before, core.cpu_time() - core_cpu_before
    after = core.call_counts()
    histogram = core.resume_histogram(ids)
    return {
        "name": name,
        "n": count,
        "wall": wall,
        "resumed": resumed,
        "histogram": {int(times): executions for times, executions in histogram.items()},
        "resume_calls": after.get("ResumeExecution", 0) - before.get("ResumeExecution", 0),
        "list_calls": after.get("ListExecutions", 0) - before.get("ListExecutions", 0),
        "status_calls": after.get("GetExecutionStatus", 0) - before.get("GetExecutionStatus", 0),
        "all_calls": sum(after.values()) - sum(before.values()),
        "peak_bytes": peak,
        "client_cpu_us": client_cpu / count * 1e6,
        "core_cpu_us": core_cpu / count * 1e6,
    }


def resumes_per_execution(result: dict[str, Any]) -> str:
    histogram = result["histogram"]
    total = sum(times * executions for times, executions in histogram.items())
    return f"{total / result['n']:.3f} (max {max(histogram)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=1,000")
    parser.add_argument("--executions", type=int, default=None, help="N (default 10,000; 1,000 with --quick)")
    parser.add_argument("--latency", type=float, default=0.005, help="emulator latency per call, s")
    parser.add_argument(
        "--sequential-sample", type=int, default=None, help="N of the sequential full loop (default 1,000)"
    )
    parser.add_argument("--high-concurrency", type=int, default=64)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    count = args.executions or (1_000 if args.quick else 10_000)
    sample = min(count, args.sequential_sample or 1_000)
    facts = machine()
    results = []
    with RemoteCore.start(latency=args.latency) as core:
        results.append(run_case(core, "seed-loop", count, seed_loop))
        results.append(run_case(core, "sequential", sample, sequential_full_loop))
        for concurrency in (OPERATOR_DEFAULT_CONCURRENCY, args.high_concurrency):
            results.append(
                run_case(core, f"ours-c{concurrency}", count, lambda c, w, k=concurrency: ours(c, w, k))
            )
        memory = [
            run_case(
                core, "memory", n, lambda c, w: ours(c, w, OPERATOR_DEFAULT_CONCURRENCY), trace_memory=True
            )
            for n in ([] if args.no_memory else sorted({max(count // 10, 100), max(count // 2, 100), count}))
        ]
    report(args, facts, count, sample, results, memory)


def report(args, facts, count, sample, results, memory) -> None:
    sequential = next(r for r in results if r["name"] == "sequential")
    sequential_at_n = sequential["wall"] * count / sample
    labels = {
        "seed-loop": "seed loop (1 page of 100, sequential)",
        "sequential": f"sequential full loop (pages, then one by one), measured at N={sample}",
    }
    rows = []
    for result in results:
        label = labels.get(result["name"], f"ours: resume_matching, max_concurrency={result['name'][6:]}")
        wall_at_n = sequential_at_n if result["name"] == "sequential" else result["wall"]
        rows.append(
            [
                label,
                result["n"],
                f"{result['wall']:.2f}",
                f"{wall_at_n:.2f}"
                + (" (extrapolated)" if result["name"] == "sequential" and sample != count else ""),
                f"{result['resumed']}/{result['n']}",
                resumes_per_execution(result),
                result["resume_calls"],
                result["list_calls"],
                result["status_calls"],
                f"{result['all_calls'] / result['n']:.3f}",
                f"{sequential_at_n / result['wall']:.1f}x" if result["name"].startswith("ours") else "",
                f"{result['client_cpu_us']:.0f} / {result['core_cpu_us']:.0f}",
            ]
        )
    memory_rows = [
        [
            m["n"],
            f"{m['peak_bytes'] / 1024:.0f}",
            f"{m['peak_bytes'] / m['n']:.0f}",
            f"{m['resumed']}/{m['n']}",
        ]
        for m in memory
    ]
    command = " ".join(["python bench/bench_bulk_resume.py", *sys.argv[1:]])
    best = min((r for r in results if r["name"].startswith("ours")), key=lambda r: r["wall"])
    default = next(r for r in results if r["name"] == f"ours-c{OPERATOR_DEFAULT_CONCURRENCY}")
    exact = all(r["histogram"] == {1: r["n"]} for r in results if r["name"].startswith("ours"))
    lines = [
        f"### 3. Bulk resume: N={count} failed executions, emulator latency {args.latency * 1000:g} ms per call",
        "",
        f"Command: `{command}` ({facts['date']}, load average at start {facts['load_average']}).",
        "",
        table(
            [
                "run",
                "N",
                "wall (s)",
                f"wall at N={count} (s)",
                "resumed",
                "resumes per execution",
                "ResumeExecution calls",
                "ListExecutions calls",
                "GetExecutionStatus calls",
                "calls to Core per execution",
                "speed-up vs sequential",
                "CPU per execution, client / emulator (us)",
            ],
            rows,
        ),
        "",
        f"The sequential full loop ran on {sample} executions; its time at N={count} is that time x "
        f"{count / sample:g} (linear: one list page per 100 and one resume per execution, each a round trip).",
        "",
        *(
            [
                "Peak Python memory of ours (tracemalloc, max_concurrency=16, separate runs):",
                "",
                table(["N", "peak (KiB)", "bytes per execution", "resumed"], memory_rows),
                "",
            ]
            if memory_rows
            else []
        ),
        f"- every execution resumed exactly once by ours: **{'yes' if exact else 'NO'}**; the seed loop "
        f"resumed {results[0]['resumed']} of {count}.",
        f"- calls to Core per execution (resumes, the run's listing, the checks' listings and reads): "
        f"**{default['all_calls'] / default['n']:.3f}** at max_concurrency=16, "
        f"**{best['all_calls'] / best['n']:.3f}** at max_concurrency={best['name'][6:]} (goal <= 1.1).",
        f"- speed-up vs the sequential full loop: **{sequential_at_n / default['wall']:.1f}x** at the operator's "
        f"default max_concurrency=16, **{sequential_at_n / best['wall']:.1f}x** at max_concurrency="
        f"{best['name'][6:]} (goal >= 20x).",
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("bulk_resume", "\n".join(lines))


if __name__ == "__main__":
    main()
