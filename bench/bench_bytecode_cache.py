"""What a Python process of the test suite pays to import Airflow without cached bytecode, and with it.

The virtualenvs are installed without bytecode, and an environment that sets
PYTHONDONTWRITEBYTECODE (the CI machine's does) makes every process compile every module it
imports from source, every time; the Makefile unexports it so that the first process to import a
module caches its bytecode and the others read it. Each run here is a fresh interpreter importing
what an Airflow service or a test worker imports, with its bytecode looked up in a cache directory
of its own (PYTHONPYCACHEPREFIX): an empty one it may not write to (no cache, as before), and one
filled by a first run (cached, as now). CPU is the process's user + system time.

    .venv/bin/python bench/bench_bytecode_cache.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import machine, reaped_children_cpu, table, write_section

#: What an Airflow service and a provider test worker import first.
MODULES = (
    "airflow.models",
    "airflow.sdk",
    "airflow.jobs.triggerer_job_runner",
    "cerebelum_provider.hooks.cerebelum",
)
IMPORTS = "import " + ", ".join(MODULES)


def import_cpu(cache_dir: str, *, write: bool) -> float:
    """CPU seconds of a fresh interpreter that imports IMPORTS with its bytecode cache in ``cache_dir``."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache_dir
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    before = reaped_children_cpu()
    subprocess.run([sys.executable, "-c", IMPORTS], env=env, check=True, capture_output=True)
    return reaped_children_cpu() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="imports measured each way (default 5)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as empty, tempfile.TemporaryDirectory() as cache:
        import_cpu(cache, write=True)  # the first process compiles and caches
        uncached, cached = [], []
        for _ in range(args.runs):  # interleaved, so that other load on the machine hits both alike
            uncached.append(import_cpu(empty, write=False))
            cached.append(import_cpu(cache, write=True))
    before, now = statistics.median(uncached), statistics.median(cached)
    facts = machine()
    markdown = "\n".join(
        [
            "### Test suite: importing Airflow in a fresh process, without and with cached bytecode",
            "",
            f"`.venv/bin/python bench/bench_bytecode_cache.py --runs {args.runs}` ("
            + f"{time.strftime('%Y-%m-%d')}, {facts['cores']} cores, Airflow {facts['apache-airflow']}).",
            f"`python -c '{IMPORTS}'`, median of {args.runs} runs each way, interleaved.",
            "",
            table(
                ["bytecode", "CPU s per process (median)", "runs"],
                [
                    [
                        "compiled from source (PYTHONDONTWRITEBYTECODE, no cache)",
                        f"{before:.2f}",
                        ", ".join(f"{value:.2f}" for value in uncached),
                    ],
                    ["read from the cache", f"{now:.2f}", ", ".join(f"{value:.2f}" for value in cached)],
                ],
            ),
            "",
            f"Without the cache each process pays **{before / now:.1f}x** the CPU, {before - now:.1f} s"
            + " more;",
            "a `make test` run starts about a hundred such processes (Airflow services and CLIs, pytest",
            "workers, subprocess tests).",
        ]
    )
    print(markdown)
    write_section("bytecode_cache", markdown)


if __name__ == "__main__":
    main()
