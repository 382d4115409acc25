"""Triggerer failover at scale: the end-to-end failover test with many deferred tasks.

Runs ``tests/e2e/test_triggerer_failover_e2e.py`` (PostgreSQL metadata database, two triggerers,
the one holding the most triggers SIGKILLed mid-wait) with ``--sensors`` mapped sensors and
``--execute`` execute operators per Core API (one run over HTTP, one over gRPC), and records
what the test measured: how long the surviving triggerer took to hold the dead one's triggers
(it waits out ``triggerer_health_check_threshold``, 10 s in the test), how long until every task
ended, and Core's status calls after the kill per deferred task (each trigger, restarted from its
serialized arguments, polls once, finds its execution final and fires).

    .venv/bin/python bench/bench_triggerer_failover.py                 # 100 sensors + 4 execute per API
    .venv/bin/python bench/bench_triggerer_failover.py --sensors 2 --execute 1   # what make test runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import PYTHON, ROOT, table, write_section

TEST = (
    "tests/e2e/test_triggerer_failover_e2e.py"
    "::test_a_triggerer_killed_mid_wait_loses_nothing_and_does_nothing_twice"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=100, help="mapped sensors per Core API")
    parser.add_argument("--execute", type=int, default=4, help="execute operators per Core API")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        figures_path = Path(work) / "figures.json"
        env = dict(
            os.environ,
            CEREBELUM_FAILOVER_SENSORS=str(args.sensors),
            CEREBELUM_FAILOVER_EXECUTE_TASKS=str(args.execute),
            CEREBELUM_FAILOVER_FIGURES=str(figures_path),
        )
        started = time.monotonic()
        done = subprocess.run(
            [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s", TEST], cwd=ROOT, env=env, check=False
        )
        wall = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"the failover test failed (exit {done.returncode})")
        figures = json.loads(figures_path.read_text())
    options = f"--sensors {args.sensors} --execute {args.execute}"
    command = f"`.venv/bin/python bench/bench_triggerer_failover.py {options}`"
    rows = [
        ("deferred tasks (sensors + execute operators, HTTP and gRPC)", figures["tasks"]),
        ("triggers held by the killed triggerer (watcher included when it held it)", figures["victim_held"]),
        (
            (
                "takeover: SIGKILL until none is left on the killed triggerer "
                f"(health-check threshold {figures['health_check_threshold']} s)"
            ),
            f"{figures['takeover_seconds']} s",
        ),
        ("SIGKILL until every task ended", f"{figures['all_finished_seconds']} s"),
        ("status calls after the kill", figures["status_calls_after_kill"]),
        ("status calls after the kill per deferred task", figures["status_calls_per_deferred_task"]),
        ("whole test (PostgreSQL, migration, 5 Airflow processes, runs)", f"{wall:.0f} s"),
    ]
    write_section(
        "triggerer_failover",
        f"### Triggerer failover: {figures['tasks']} deferred tasks, one triggerer SIGKILLed mid-wait\n\n"
        f"Command: {command}\n\n" + table(("what", "measured"), rows),
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
