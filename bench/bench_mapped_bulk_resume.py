"""Past one machine: a bulk resume split over 4 mapped tasks against one task over everything.

N failed executions spread over 4 workflows, emulator latency per call. One task:
``resume_matching`` over every workflow (``CerebelumBulkResumeOperator(workflow_name=None)``).
Mapped: 4 processes at once, each running ``resume_matching`` for its own workflow, as
``CerebelumBulkResumeOperator.partial(...).expand(workflow_name=[...])`` runs on 4 workers. The
processes start, connect and warm up first, then all begin on one signal; the wall time is from
that signal to the last one done. Each layout gets its own emulator process, freshly seeded.

    .venv/bin/python bench/bench_mapped_bulk_resume.py            # N=10,000
    .venv/bin/python bench/bench_mapped_bulk_resume.py --quick    # N=1,000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import PYTHON, RemoteCore, machine, table, write_section  # noqa: E402

WORKFLOWS = ("orders", "billing", "shipping", "emails")
CONCURRENCY = 16  # the operator's default max_concurrency


def worker(address: str, workflow: str | None) -> None:
    """One task: connect, warm up, say ready, wait for the go line, resume, print the summary."""
    from cerebelum_provider.bulk import resume_matching
    from cerebelum_provider.client import ExecutionClient

    async def run() -> dict:
        async with ExecutionClient(address) as client:
            await client.list_executions(limit=1)
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            cpu, started = time.process_time(), time.perf_counter()
            summary = await resume_matching(client, workflow_name=workflow, max_concurrency=CONCURRENCY)
            return {
                "wall": time.perf_counter() - started,
                "cpu": time.process_time() - cpu,
                "resumed": len(summary.resumed),
                "matched": summary.matched,
            }

    print(json.dumps(asyncio.run(run())), flush=True)


def run_layout(count: int, latency: float, mapped: bool) -> dict:
    with RemoteCore.start(latency=latency) as core:
        ids = [i for workflow in WORKFLOWS for i in core.seed(workflow, count // len(WORKFLOWS), "failed")]
        targets = list(WORKFLOWS) if mapped else [None]
        workers = [
            subprocess.Popen(
                [PYTHON, __file__, "--worker", core.address, "--workflow", target or ""],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            for target in targets
        ]
        for process in workers:
            assert process.stdout.readline().strip() == "ready"
        core_cpu = core.cpu_time()
        started = time.perf_counter()
        for process in workers:
            process.stdin.write("go\n")
            process.stdin.flush()
        results = [json.loads(process.stdout.readline()) for process in workers]
        wall = time.perf_counter() - started
        core_cpu = core.cpu_time() - core_cpu
        for process in workers:
            process.wait(60)
        histogram = core.resume_histogram(ids)
    return {
        "wall": wall,
        "resumed": sum(r["resumed"] for r in results),
        "client_cpu": sum(r["cpu"] for r in results),
        "core_cpu": core_cpu,
        "exactly_once": histogram == {1: len(ids)},
        "histogram": histogram,
        "n": len(ids),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=1,000")
    parser.add_argument("--executions", type=int, default=None, help="N (default 10,000; 1,000 with --quick)")
    parser.add_argument("--latency", type=float, default=0.005, help="emulator latency per call, s")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workflow", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.workflow or None)
        return
    count = args.executions or (1_000 if args.quick else 10_000)
    facts = machine()
    single = run_layout(count, args.latency, mapped=False)
    mapped = run_layout(count, args.latency, mapped=True)
    rows = [
        [
            label,
            f"{r['wall']:.2f}",
            f"{r['resumed']}/{r['n']}",
            "yes" if r["exactly_once"] else f"NO {r['histogram']}",
            f"{r['client_cpu']:.2f}",
            f"{r['core_cpu']:.2f}",
        ]
        for label, r in (("one task, all 4 workflows", single), ("4 mapped tasks, one workflow each", mapped))
    ]
    command = "python bench/bench_mapped_bulk_resume.py" + (" --quick" if args.quick else "")
    lines = [
        f"### 6. Past one machine: bulk resume of N={count} over 4 workflows, one task vs 4 mapped tasks "
        f"(emulator latency {args.latency * 1000:g} ms, max_concurrency={CONCURRENCY} per task)",
        "",
        f"Command: `{command}` ({facts['date']}, load average at start {facts['load_average']}).",
        "",
        table(["layout", "wall (s)", "resumed", "each exactly once", "client CPU (s, all tasks)", "emulator CPU (s)"], rows),
        "",
        f"- mapped / one task speed-up: **{single['wall'] / mapped['wall']:.2f}x**.",
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("mapped_bulk_resume", "\n".join(lines))


if __name__ == "__main__":
    main()
