"""Print the line and the branch coverage of ``make coverage``'s combined data, as two figures.

coverage.py's own report merges lines and branches into one percentage; the test-time work
compares each on its own (before and after a change), so both are printed here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "coverage.json"
        subprocess.run([sys.executable, "-m", "coverage", "json", "-q", "-o", str(report)], check=True)
        totals = json.loads(report.read_text())["totals"]
    lines = (totals["covered_lines"], totals["num_statements"])
    branches = (totals["covered_branches"], totals["num_branches"])
    print(
        f"cerebelum_provider/: lines {100 * lines[0] / lines[1]:.1f}% ({lines[0]}/{lines[1]}), "
        f"branches {100 * branches[0] / branches[1]:.1f}% ({branches[0]}/{branches[1]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
