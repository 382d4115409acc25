"""The real Core's CPU with and without the Erlang VM's busy wait, for the same work.

The test harness (``scripts/real_core.py``) starts Core with ``NO_BUSY_WAIT``: the VM's schedulers
sleep as soon as they run out of work instead of spinning a while first. This measures what that
saves: Core is started once each way (alternately, ``--runs`` times), then runs the same work, a
test's kind: ``--executions`` executions of a three-step workflow started over REST and run to the
end by the SDK worker, each read until it completes, then ``--reads`` status reads. Core's CPU is
the BEAM's (``core.pid``, with its children), read from /proc before and after the work, as
``bench_real_core.py`` reads it.

Core always takes port 4021: run as root, the script runs itself in a network of its own
(``unshare -n``), so it may run beside a test stage.

    .venv/bin/python bench/bench_core_busy_wait.py [--runs 2] [--executions 20] [--reads 200]
    .venv/bin/python bench/bench_core_busy_wait.py --quick   # one run of 10 executions, 100 reads
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from _support import median
from bench_real_core import CoreCPU
from real_core import NO_BUSY_WAIT, RealCore
from realcore_stage import IN_OWN_NETWORK, own_networks_available

VARIANTS = {"VM default (busy wait)": "", "NO_BUSY_WAIT": NO_BUSY_WAIT}


def work(core: RealCore, executions: int, reads: int) -> tuple[float, float]:
    """Run the workload; return (Core's CPU seconds, wall seconds) for it."""
    cpu = CoreCPU(core)
    before, began = cpu.sample()["core"], time.monotonic()
    ids = [core.start_execution("rc_ok") for _ in range(executions)]
    for execution_id in ids:
        core.wait_for_state(execution_id, {"completed"}, timeout=120.0)
    for index in range(reads):
        core.execution(ids[index % len(ids)])
    return cpu.sample()["core"] - before, time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--executions", type=int, default=20)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="one run of 10 executions and 100 reads")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.executions, args.reads = 1, 10, 100
    if os.geteuid() == 0 and not os.environ.get("BENCH_OWN_NETWORK") and own_networks_available():
        env = {**os.environ, "BENCH_OWN_NETWORK": "1"}
        return subprocess.run([*IN_OWN_NETWORK, sys.executable, *sys.argv], env=env, check=False).returncode

    results: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    for run in range(args.runs):
        for name, flags in VARIANTS.items():
            with RealCore(erl_flags=flags) as core:
                time.sleep(5.0)  # past the start-up's own work
                cpu, wall = work(core, args.executions, args.reads)
            results[name].append((cpu, wall))
            print(f"run {run + 1}, {name}: Core CPU {cpu:.2f} s, wall {wall:.1f} s", flush=True)

    baseline = median([cpu for cpu, _ in results["VM default (busy wait)"]])
    print()
    print("| Core's VM flags | Core CPU per run (s) | median | / busy wait | wall per run (s) |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        cpus = [cpu for cpu, _ in runs]
        print(
            f"| {name} | {', '.join(f'{cpu:.2f}' for cpu in cpus)} | {median(cpus):.2f} "
            f"| {median(cpus) / baseline:.2f}x | {', '.join(f'{wall:.1f}' for _, wall in runs)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
