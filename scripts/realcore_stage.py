"""``make test-realcore``: the real-Core tests, in two halves side by side when the machine allows.

A real Core always binds port 4021 (its metrics), so two cannot share a network. As root, each half
runs in a network namespace of its own (``unshare -n``, its own loopback): the Airflow-stack tests
(``tests/realcore/e2e``) beside the rest, each half starting its own Cores. Most of the stage is spent
waiting on Core and Airflow, so the halves together take little more than the longer one. Without
``unshare`` (not root, or a container without the capability) the stage runs as one process.

    python scripts/realcore_stage.py [pytest arguments, e.g. --cov=...]

Each half writes its coverage data (when asked for) to ``.coverage.realcore-<half>``; the output of
each half is printed in one piece when it ends. Exits with the first non-zero pytest status.
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
#: The halves: the one that starts an Airflow stack, and the rest.
HALVES = {
    "e2e": ["tests/realcore/e2e"],
    "core": ["tests/realcore", "--ignore=tests/realcore/e2e"],
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
        for half, selection in HALVES.items():
            output = open(Path(scratch) / f"{half}.log", "w+b")  # noqa: SIM115 (closed below)
            env = {**os.environ, "COVERAGE_FILE": f".coverage.realcore-{half}"}
            process = subprocess.Popen(
                [*IN_OWN_NETWORK, *PYTEST, *selection, *extra],
                cwd=REPO,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            running[half] = (process, output)
        status = 0
        for half, (process, output) in running.items():
            returncode = process.wait()
            output.seek(0)
            print(f"---- real-Core stage, {half} half ({' '.join(HALVES[half])}) ----", flush=True)
            sys.stdout.buffer.write(output.read())
            sys.stdout.flush()
            output.close()
            status = status or returncode
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
