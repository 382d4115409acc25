"""DAG-parse cost: what importing the sensor and every operator adds to ``import airflow.sdk``.

Each run is a fresh interpreter under ``python -X importtime``: it imports ``airflow.sdk``,
writes a marker to stderr, then does what a DAG file using this provider does (import the
sensor and the three operators). Everything ``-X importtime`` reports after the marker is the
cost this provider adds (its own modules and whatever they pull in that ``airflow.sdk`` had not
loaded yet). The median of 5 runs is reported, with ``import airflow.sdk`` alone for scale, and
whether grpc, google.protobuf or tenacity were loaded by the provider's imports.
Goal: at most 20 ms added, none of grpc / protobuf / tenacity.

    .venv/bin/python bench/bench_import_time.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import PYTHON, machine, median, write_section  # noqa: E402

MARKER = "=== provider imports start ==="
DAG_IMPORTS = (
    "from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor\n"
    "from cerebelum_provider.operators.cerebelum import (\n"
    "    CerebelumBulkResumeOperator, CerebelumExecuteWorkflowOperator, CerebelumResumeExecutionOperator,\n"
    ")\n"
)
HEAVY = ("grpc", "google.protobuf", "tenacity")


def parse(stderr: str) -> tuple[float, float, dict[str, float], list[str]]:
    """(airflow.sdk µs, provider µs, self µs by package after the marker, modules after the marker)."""
    before = after = 0.0
    by_package: dict[str, float] = defaultdict(float)
    modules: list[str] = []
    past_marker = False
    for line in stderr.splitlines():
        if line.strip() == MARKER:
            past_marker = True
            continue
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_field, cumulative_field, module = line.split("|")
        self_us = float(self_field.split(":")[1])
        cumulative_us = float(cumulative_field)
        top_level = not module.startswith("  ")
        module = module.strip()
        if past_marker:
            modules.append(module)
            by_package[".".join(module.split(".")[:2])] += self_us
            if top_level:
                after += cumulative_us
        elif top_level:
            before += cumulative_us
    return before, after, by_package, modules


def one_run() -> tuple[float, float, dict[str, float], list[str], float]:
    """One fresh interpreter: the parse of its importtime report, plus the CPU ms of the DAG imports."""
    code = (
        f"import sys, time\nimport airflow.sdk\nsys.stderr.write({MARKER!r} + '\\n')\n"
        f"cpu = time.process_time()\n{DAG_IMPORTS}print((time.process_time() - cpu) * 1000)\n"
    )
    # Bytecode as an installed provider has it (this environment sets PYTHONDONTWRITEBYTECODE,
    # which would make every run compile the sources); kept outside the tree by the prefix.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "cerebelum-bench-pycache")
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return (*parse(done.stderr), float(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="same as --runs 3")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    facts = machine()
    already = subprocess.run(
        [PYTHON, "-c", f"import sys, airflow.sdk; print(','.join(h for h in {HEAVY!r} if h in sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    one_run()  # warm-up: writes the bytecode
    results = [one_run() for _ in range(runs)]
    cpu_ms = median([r[4] for r in results])
    sdk_ms = median([r[0] for r in results]) / 1000
    added_ms = median([r[1] for r in results]) / 1000
    modules = results[-1][3]
    heavy = sorted({m for m in modules for h in HEAVY if m == h or m.startswith(h + ".")})
    by_package: dict[str, list[float]] = defaultdict(list)
    for result in results:
        for package, micros in result[2].items():
            by_package[package].append(micros)
    top = sorted(((median(v) / 1000, k) for k, v in by_package.items()), reverse=True)[:6]
    command = "python bench/bench_import_time.py" + (" --quick" if args.quick else "")
    lines = [
        f"### 4. DAG-parse cost: the sensor and every operator on top of `import airflow.sdk` (median of {runs})",
        "",
        f"Command: `{command}` ({facts['date']}, load average at start {facts['load_average']}).",
        "",
        f"- `import airflow.sdk` alone: {sdk_ms:.0f} ms; added by the provider's imports: **{added_ms:.1f} ms** "
        f"(goal <= 20 ms: {'met' if added_ms <= 20 else 'MISSED'}), {len(modules)} modules; CPU time of those "
        f"imports (time.process_time, insensitive to other processes' load): **{cpu_ms:.1f} ms**.",
        f"- grpc / google.protobuf / tenacity loaded by the provider's imports: **{', '.join(heavy) or 'none'}** "
        f"(`import airflow.sdk` itself already loads: {already or 'none of them'}).",
        "- largest self times after the marker: " + ", ".join(f"{name} {ms:.1f} ms" for ms, name in top) + ".",
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("import_time", "\n".join(lines))


if __name__ == "__main__":
    main()
