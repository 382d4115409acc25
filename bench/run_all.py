"""Run every benchmark (what ``make bench`` does) and refresh bench/RESULTS.md.

Each benchmark runs in its own interpreter, one after the other (they would disturb each
other's timings), and writes its own section of RESULTS.md; this script writes the header
(machine, date, command) and the output of the client's concurrency benchmark.

    .venv/bin/python bench/run_all.py            # full sizes (~15 min)
    .venv/bin/python bench/run_all.py --quick    # small sizes, to check that everything runs
    .venv/bin/python bench/run_all.py --only bulk_resume,import_time
    .venv/bin/python bench/run_all.py --only fleet_round2,real_core   # second round, on request only
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import BENCH_DIR, PYTHON, RESULTS, machine, write_section  # noqa: E402

BENCHMARKS = (
    "triggerer_fleet",
    "sleep_aware",
    "bulk_resume",
    "import_time",
    "detection_latency",
    "mapped_bulk_resume",
    "transports",
    "ui_pages",
    "bytecode_cache",
)
#: Run only when named with --only: the second round's fleet (~20 min), the real Core (it takes
#: port 4021, one Core per machine, and waits while another Core holds it), the real Core's VM busy
#: wait (four Core starts; as root in a network of its own) and the idle Airflow stacks of the test
#: suite (two stacks, ~4 min).
ON_REQUEST = ("fleet_round2", "real_core", "core_busy_wait", "stack_idle")


def header(quick: bool, names: list[str]) -> str:
    facts = machine()
    command = "make bench  (= .venv/bin/python bench/run_all.py" + (" --quick" if quick else "") + ")"
    return "\n".join(
        [
            f"Latest run: {facts['date']}. Command: `{command}`; benchmarks: {', '.join(names)}.",
            "",
            f"Machine: {facts['cpu']}, {facts['cores']} cores, {facts['os']}, Python {facts['python']}, "
            f"grpcio {facts['grpcio']}, protobuf {facts['protobuf']}, apache-airflow {facts['apache-airflow']}. "
            f"Load average when the run started: {facts['load_average']} (other work was running on the "
            "machine; wall-clock figures such as event-loop lag are sensitive to it, CPU-time and count "
            "figures much less).",
            "",
            "Every benchmark talks to the Core emulator over loopback, the emulator in its own process so "
            "that client CPU is measured alone. Each section below names its own command.",
        ]
    )


def run_concurrent_status(quick: bool) -> None:
    """The client engineer's benchmark prints its figures; they go in a section of their own."""
    command = [PYTHON, str(BENCH_DIR / "bench_concurrent_status.py")] + (["--calls", "50"] if quick else [])
    done = subprocess.run(command, capture_output=True, text=True)
    shown = " ".join(["python", "bench/bench_concurrent_status.py"] + command[2:])
    body = done.stdout.strip() if done.returncode == 0 else f"failed (exit {done.returncode}): {done.stderr[-500:]}"
    write_section("concurrent_status", f"### Client: concurrent status calls\n\nCommand: `{shown}`\n\n```\n{body}\n```")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark names")
    args = parser.parse_args()
    names = [name for name in args.only.split(",") if name]
    unknown = sorted(set(names) - set(BENCHMARKS) - set(ON_REQUEST))
    if unknown:
        raise SystemExit(f"unknown benchmarks {unknown}; known: {', '.join(BENCHMARKS + ON_REQUEST)}")
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n")
    write_section("header", header(args.quick, names))
    failed = []
    for name in names:
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        command = [PYTHON, str(BENCH_DIR / f"bench_{name}.py")] + (["--quick"] if args.quick else [])
        if subprocess.run(command).returncode != 0:
            failed.append(name)
        print(f"== {name}: {time.perf_counter() - started:.0f} s", flush=True)
    if (BENCH_DIR / "bench_concurrent_status.py").exists():
        run_concurrent_status(args.quick)
    if failed:
        raise SystemExit(f"benchmarks failed: {', '.join(failed)}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
