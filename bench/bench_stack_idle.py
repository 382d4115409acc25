"""The CPU an idle test Airflow stack burns, per service: the intervals ``scripts/airflow_stack.py``
sets against the ones it used to set (DAG files reparsed every 5 s, the scheduler idling 0.2 s, then
0.5 s).

The end-to-end tests keep a stack (scheduler, dag-processor, triggerer, api-server) running for
minutes while they drive it, on a machine whose two cores the rest of the suite shares: what a
stack burns while nothing happens is taken from every other test. Each configuration starts the
shared e2e stack's DAG folders, waits until it is healthy, then reads each service's CPU time
(its process and every process under it, those that already ended included) over a window.

    .venv/bin/python bench/bench_stack_idle.py [--window 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from _support import ROOT, machine, table, write_section
from airflow_stack import AirflowStack

#: What the stack set before: every DAG file parsed again every 5 s, idle scheduler loops 0.2 s apart.
BEFORE = {
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
}
#: The scheduler's idle loop before it went to Airflow's default second (the rest as now).
HALF_SECOND_IDLE = {"AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5"}
HALF_SECOND_LABEL = "scheduler idle 0.5 s (the setting until 5f44a82)"


def cpu_seconds(pid: int) -> float:
    """User + system time of ``pid`` and its descendants, including the children they reaped."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def idle_cpu(extra_env: dict[str, str], window: float) -> tuple[float, dict[str, float], dict[str, float]]:
    """(seconds to healthy, CPU seconds per service until healthy, per service over ``window``)."""
    home = Path(tempfile.mkdtemp(prefix="bench-idle-stack-"))
    started = time.monotonic()
    with AirflowStack(
        home=home,
        dags_folder=ROOT / "example_dags",
        extra_dag_folders={"e2e": ROOT / "tests" / "e2e" / "dags"},
        connections={"cerebelum_default": "cerebelum://127.0.0.1:1?api=grpc"},
        extra_env=extra_env,
    ) as stack:
        healthy_after = time.monotonic() - started
        at_start = {name: cpu_seconds(process.popen.pid) for name, process in stack.processes.items()}
        time.sleep(window)
        at_end = {name: cpu_seconds(process.popen.pid) for name, process in stack.processes.items()}
    return healthy_after, at_start, {name: at_end[name] - at_start[name] for name in at_end}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=60.0, help="idle seconds measured (default 60)")
    args = parser.parse_args()

    runs = {
        "before (reparse 5 s, idle 0.2 s)": BEFORE,
        HALF_SECOND_LABEL: HALF_SECOND_IDLE,
        "now (airflow_stack.py's settings)": {},
    }
    results = {label: idle_cpu(env, args.window) for label, env in runs.items()}
    services = list(next(iter(results.values()))[2])
    rows = []
    for label, (healthy_after, at_start, over_window) in results.items():
        per_minute = {name: seconds * 60 / args.window for name, seconds in over_window.items()}
        rows.append(
            [label, f"{healthy_after:.0f}", f"{sum(at_start.values()):.0f}"]
            + [f"{per_minute[name]:.1f}" for name in services]
            + [f"{sum(per_minute.values()):.1f}"]
        )
    (_, _, before), *_, (_, _, now) = results.values()
    ratio = sum(before.values()) / max(sum(now.values()), 1e-9)
    half_second = results[HALF_SECOND_LABEL][2]
    scheduler_ratio = half_second["scheduler"] / max(now["scheduler"], 1e-9)
    facts = machine()
    markdown = "\n".join(
        [
            f"### Test suite: an idle Airflow stack's CPU, {args.window:.0f} s after it is healthy",
            "",
            f"`.venv/bin/python bench/bench_stack_idle.py --window {args.window:.0f}` ("
            + f"{time.strftime('%Y-%m-%d')}, {facts['cores']} cores, other load on the machine as it was).",
            "The shared e2e stack's DAG folders (example_dags/ and tests/e2e/dags/), SQLite, LocalExecutor.",
            "",
            table(
                ["settings", "s to healthy", "CPU s to healthy"]
                + [f"{name} CPU s/min idle" for name in services]
                + ["stack CPU s/min idle"],
                rows,
            ),
            "",
            f"Idle CPU, before / now: **{ratio:.1f}x**. A changed DAG file is still parsed again at",
            "once (Airflow's `file_parsing_sort_mode` `modified_time`), a new one within",
            "`refresh_interval` (5 s).",
            f"The scheduler alone, idling 0.5 s / Airflow's default 1 s: **{scheduler_ratio:.1f}x**.",
        ]
    )
    print(markdown)
    write_section("stack_idle", markdown)


if __name__ == "__main__":
    main()
