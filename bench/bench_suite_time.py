"""The whole test suite's time from a fresh clone, for two revisions run alternately.

CI runs ``.ci/run`` (``make test``) on a clean checkout. This clones each revision of this repository
into a scratch folder (beside a link to ``../shared`` when this checkout has one, so the real-Core
stage runs), runs ``CI=true bash .ci/run`` there, and records its wall time, the CPU that ``time``
would count (the run's reaped process tree) and the machine's busy CPU read from ``/proc/stat``
(which also counts what leaves that tree: PostgreSQL, Core). The two revisions take turns, ``--rounds``
times, so that the machine's drift (its speed varies by a third from hour to hour) falls on both.
The ratio is the head's median over the base's median. A red run is reported as such and counts.

    .venv/bin/python bench/bench_suite_time.py --base 57d3e71 --head main [--rounds 2]

Each run takes 7 to 12 minutes on a 2-core machine; nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import median, reaped_children_cpu, table, write_section

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every core, every process) since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def run_suite(revision: str, scratch: Path) -> dict:
    """Clone ``revision`` into ``scratch`` and run ``.ci/run`` there; return its figures."""
    checkout = scratch / "main"
    subprocess.run(["git", "clone", "-q", str(REPO), str(checkout)], check=True)
    subprocess.run(["git", "-C", str(checkout), "checkout", "-q", revision], check=True)
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if SHARED.is_dir():
        (scratch / "shared").symlink_to(SHARED)
    log_path = scratch / "ci.log"
    cpu_before = reaped_children_cpu()
    busy_before, began = machine_busy_seconds(), time.monotonic()
    with open(log_path, "wb") as log:
        status = subprocess.run(
            ["bash", ".ci/run"],
            check=False,
            cwd=checkout,
            env={**os.environ, "CI": "true"},
            stdout=log,
            stderr=subprocess.STDOUT,
        ).returncode
    wall = time.monotonic() - began
    busy = machine_busy_seconds() - busy_before
    cpu = reaped_children_cpu() - cpu_before
    text = log_path.read_text(errors="replace")
    stage_seconds = re.findall(r"^\d[\d,]* passed.*? in ([\d.]+)s", text, re.MULTILINE)
    outcome = "green"
    if status != 0:
        # The clone goes when the run ends: a red run's output is kept to be read.
        kept = Path(tempfile.gettempdir()) / f"suite-time-{commit}-{time.strftime('%H%M%S')}-red.log"
        shutil.copyfile(log_path, kept)
        outcome = f"red (exit {status}; its output: {kept})"
    return {
        "revision": revision,
        "commit": commit,
        "status": outcome,
        "wall": wall,
        "cpu": cpu,
        "busy": busy,
        "stages": ", ".join(f"{seconds.split('.')[0]} s" for seconds in stage_seconds),
    }


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the baseline revision (a commit, branch or tag)")
    parser.add_argument("--head", default="HEAD", help="the revision measured against it (default HEAD)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each revision, alternately")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    for revision in (args.base, args.head):
        known = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--verify", "-q", f"{revision}^{{commit}}"],
            capture_output=True,
            check=False,
        )
        if known.returncode != 0:
            parser.error(f"{revision!r} is not a revision of {REPO}")

    runs = []
    for round_number in range(1, args.rounds + 1):
        for role, revision in (("base", args.base), ("head", args.head)):
            scratch = Path(tempfile.mkdtemp(prefix=f"suite-time-{role}-"))
            try:
                figures = {"round": round_number, "role": role, **run_suite(revision, scratch)}
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            runs.append(figures)
            print(
                f"round {round_number} {role} {figures['commit']}: {figures['status']}, "
                f"{minutes(figures['wall'])}, CPU {figures['cpu']:.0f} s, "
                f"machine busy {figures['busy']:.0f} s",
                flush=True,
            )

    rows = [
        [
            run["round"],
            f"{run['role']} `{run['commit']}`",
            run["status"],
            minutes(run["wall"]),
            f"{run['cpu']:.0f}",
            f"{run['busy']:.0f}",
            run["stages"],
        ]
        for run in runs
    ]
    walls = {role: median([run["wall"] for run in runs if run["role"] == role]) for role in ("base", "head")}
    busy = {role: median([run["busy"] for run in runs if run["role"] == role]) for role in ("base", "head")}
    command = f"bench/bench_suite_time.py --base {args.base} --head {args.head} --rounds {args.rounds}"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    markdown = "\n".join(
        [
            "### Test suite: `.ci/run` from a fresh clone, two revisions alternately",
            "",
            f"`.venv/bin/python {command}` ({when}, {os.cpu_count()} cores).",
            (
                "CPU: the run's process tree, as `time` counts it; machine busy: every core's busy time "
                "from `/proc/stat` over the run. Stages: the test counts' own times, in the order make "
                "printed them."
            ),
            "",
            table(["round", "revision", "result", "wall", "CPU s", "machine busy s", "stages (s)"], rows),
            "",
            (
                f"Median wall, head / base: **{walls['head'] / walls['base']:.2f}x** "
                f"({minutes(walls['head'])} / {minutes(walls['base'])}); machine busy: "
                f"{busy['head'] / busy['base']:.2f}x."
            ),
        ]
    )
    print(markdown)
    if not args.no_write:
        write_section("suite_time", markdown)
    return 0 if all(run["status"] == "green" for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
