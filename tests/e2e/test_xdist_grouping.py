"""The tests here share one Airflow stack only if pytest-xdist sends them all to one worker."""

from __future__ import annotations

import pytest


def test_this_directory_runs_on_one_xdist_worker(request: pytest.FixtureRequest) -> None:
    # pytest-xdist (--dist loadgroup) groups a test by adding "@group" to its node id on each worker;
    # pytest 9.2 keeps node ids where pytest-xdist 3.8 cannot add it, and then every worker that runs
    # a test of tests/e2e starts its own Airflow stack (two minutes of CPU each, on a 2-core machine).
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run by a pytest-xdist worker with --dist loadgroup")
    assert request.node.nodeid.endswith("@airflow-stack"), (
        f"pytest-xdist did not group {request.node.nodeid}: this pytest ({pytest.__version__}) and "
        "pytest-xdist do not work together; use the versions in requirements/dev.lock"
    )
