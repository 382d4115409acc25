"""A real Airflow stack (scheduler, dag-processor, triggerer, api-server) on the real Core's HTTP API.

``realcore_airflow`` starts the four services once for this directory, with ``cerebelum_default``
pointing at this directory's real Core over ``api=http`` and the DAGs of ``dags/``. The modules here
share one Core and one Airflow (an Airflow stack takes about 50 s to start): they run a handful of
executions, far from the pile-up that makes tests/realcore start a Core per module. The service and
task logs are copied to ``test-artifacts/realcore-e2e-logs/`` at the end, for a failure to be readable.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "scripts"))

from airflow_stack import AirflowStack
from real_core import RealCore

from tests.browser import browser, chromium  # noqa: F401 (the browser tests' fixtures)
from tests.realcore.conftest import started_real_core

ARTIFACTS = REPO / "test-artifacts" / "realcore-e2e-logs"


@pytest.fixture(scope="package")
def real_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCore]:
    """One real Core stack for the modules of this directory."""
    yield from started_real_core(tmp_path_factory)


@pytest.fixture(scope="package")
def realcore_airflow(real_core: RealCore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    """A started Airflow whose ``cerebelum_default`` connection is the real Core over HTTP."""
    stack = AirflowStack(
        home=tmp_path_factory.mktemp("realcore-airflow"),
        dags_folder=Path(__file__).parent / "dags",
        connections={"cerebelum_default": real_core.airflow_connection_uri("http")},
    )
    try:
        with stack:
            yield stack
    finally:
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
        if stack.logs_dir.exists():
            shutil.copytree(stack.logs_dir, ARTIFACTS)
        if (stack.home / "logs").exists():
            shutil.copytree(stack.home / "logs", ARTIFACTS / "task-logs")
