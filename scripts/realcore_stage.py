"""``make test-realcore``: the real-Core tests, in three parts side by side when the machine allows.

A real Core always binds port 4021 (its metrics), so two cannot share a network. As root, each part
runs in a network namespace of its own (``unshare -n``, its own loopback) and starts its own Cores:
the Airflow-stack tests (``tests/realcore/e2e``); the conformance table, the client and the
provider's classes; and the rest.
Most of the stage is spent waiting on Core (most modules start a Core of its own, 10 to 60 s) and
Airflow, not computing, so the parts together take little more than the longest one. Without
``unshare`` (not root, or a container without the capability) the stage runs as one process.

    python scripts/realcore_stage.py [pytest arguments, e.g. --cov=...]

Each part writes its coverage data (when asked for) to ``.coverage.realcore-<part>``; the output of
each part is printed in one piece when it ends. Exits with the first non-zero pytest status.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--durations=10"]
#: The parts, of about equal length: the one that starts an Airflow stack; the conformance table (it
#: restarts Core), the client and the provider's classes; and the rest.
CORE_PART = [
    "tests/realcore/test_conformance.py",
    "tests/realcore/test_client.py",
    "tests/realcore/test_provider.py",
]
PARTS = {
    "e2e": ["tests/realcore/e2e"],
    "core": CORE_PART,
    "rest": ["tests/realcore", "--ignore=tests/realcore/e2e", *(f"--ignore={path}" for path in CORE_PART)],
}
#: A shell that brings the namespace's loopback up, then runs its arguments.
IN_OWN_NETWORK = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


def own_networks_available() -> bool:
    """Whether this process may give a child a network namespace with a working loopback."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run([*IN_OWN_NETWORK, "true"], capture_output=True, check=False)
    return probe.returncode == 0


def main(extra: list[str]) -> int:
    if not own_networks_available():
        print("real-Core stage: one process (no network namespaces here: needs root and unshare)")
        env = {**os.environ, "COVERAGE_FILE": ".coverage.realcore"}
        return subprocess.run([*PYTEST, "tests/realcore", *extra], cwd=REPO, env=env, check=False).returncode

    with tempfile.TemporaryDirectory(prefix="realcore-stage-") as scratch:
        running = {}
        for part, selection in PARTS.items():
            output = open(Path(scratch) / f"{part}.log", "w+b")  # noqa: SIM115 (closed below)
            env = {**os.environ, "COVERAGE_FILE": f".coverage.realcore-{part}"}
            process = subprocess.Popen(
                [*IN_OWN_NETWORK, *PYTEST, *selection, *extra],
                cwd=REPO,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            running[part] = (process, output)
        status = 0
        for part, (process, output) in running.items():
            returncode = process.wait()
            output.seek(0)
            print(f"---- real-Core stage, {part} part ({' '.join(PARTS[part])}) ----", flush=True)
            sys.stdout.buffer.write(output.read())
            sys.stdout.flush()
            output.close()
            status = status or returncode
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
