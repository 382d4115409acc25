"""The README's "The client on its own" example, extracted from README.md and run as written
against the real Core, release be56c90, over HTTP.

The example must tell the truth about its resumes: on this release Core answers
``already_running`` for a FAILED execution and runs nothing, so every FAILED execution it finds
must be printed as "still FAILED: not resumed", none as "resumed".
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from real_core import RealCore

pytestmark = [pytest.mark.realcore, pytest.mark.shares_real_core, pytest.mark.timeout(180)]

README = Path(__file__).resolve().parents[2] / "README.md"
RELEASE = "be56c90"
SECTION = "## The client on its own"


def readme_example() -> str:
    """The first ```python block of the README's section on the client."""
    text = README.read_text()
    section = text[text.index(SECTION) :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"README.md's {SECTION!r} section has no python code block"
    return match.group(1)


def test_the_readme_client_example_runs_as_written_and_reports_no_false_resume(real_core: RealCore, tmp_path):
    assert real_core.release == RELEASE, f"this test pins what Core {RELEASE} does; here: {real_core.release}"
    real_core.add_blueprint("orders", ("ok_a", "boom"))
    real_core.set_boom_failing(True)
    failed = [real_core.start_execution("orders", {"order_id": n}) for n in (1, 2)]
    for execution_id in failed:
        real_core.wait_for_state(execution_id, ("failed",))
    script = tmp_path / "client_example.py"
    script.write_text(readme_example())

    result = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "CEREBELUM_URL": real_core.http_url, "CEREBELUM_TOKEN": real_core.token},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for execution_id in failed:
        assert f"{execution_id} still FAILED: not resumed" in lines, result.stdout
        assert f"{execution_id} resumed" not in lines, result.stdout
        # Core answered and ran nothing: the execution stays FAILED.
        assert real_core.execution(execution_id)["state"] == "failed"
    assert re.search(r"not_resumed=[2-9]", lines[-1]), result.stdout
