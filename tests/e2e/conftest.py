"""One real Airflow stack and one Core emulator process shared by the end-to-end tests.

Starting Airflow's four services takes 30 to 60 seconds on a 2-core machine, so the stack is
started once for this directory and shared by every module here but ``OWN_STACK_MODULES`` (one
pytest-xdist worker runs all of them), and stopped when the worker moves on to tests elsewhere. Each test
uses its own executions and connection ids so that they do not depend on each other's order.
The service logs are copied to ``test-artifacts/e2e-logs/`` at the end, for a failure to be
readable.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from airflow_stack import AirflowStack, EmulatorProcess

from tests.browser import browser  # noqa: F401 (the connection-form tests' fixture)

ARTIFACTS = REPO / "test-artifacts"
#: The modules here that start their own Airflow instead of the shared one: users with roles, and
#: PostgreSQL with two triggerers.
OWN_STACK_MODULES = ("test_cerebelum_pages_browser.py", "test_triggerer_failover_e2e.py")

#: The connection's Core UI address, for the "Cerebelum execution" link (never requested).
UI_URL = "http://127.0.0.1:9/executions/{execution_id}"
#: Failed executions the bulk-resume DAG must resume, each exactly once.
NIGHTLY_WORKFLOW = "e2e_nightly"
NIGHTLY_FAILED = 6
#: A workflow long enough (one step per STEP_SECONDS) for the sensor to be seen deferred.
SLOW_WORKFLOW = "e2e_slow"
STEP_SECONDS = 1.0
#: Executions that wait for approval at their second step: one a person approves, one rejects.
APPROVAL_WORKFLOW = "e2e_orders"
APPROVAL_EXECUTIONS = {"approve": "e2e-approval-approve", "reject": "e2e-approval-reject"}

SCENARIO = {
    "workflows": {
        NIGHTLY_WORKFLOW: ["extract", "transform", "load"],
        SLOW_WORKFLOW: [f"step_{number}" for number in range(1, 13)],
        APPROVAL_WORKFLOW: ["validate", "charge", "ship"],
    },
    "executions": [
        {
            "workflow": NIGHTLY_WORKFLOW,
            "execution_id": "e2e-nightly",
            "count": NIGHTLY_FAILED,
            "fail_at": "transform",
            "fail_times": 1,
            "error_kind": "upstream_timeout",
            "error_message": "warehouse did not answer",
            "settle": True,
        },
        {"workflow": NIGHTLY_WORKFLOW, "execution_id": "e2e-nightly-done", "complete": True},
        *(
            {
                "workflow": APPROVAL_WORKFLOW,
                "execution_id": execution_id,
                "approval_at": "charge",
                "settle": True,
            }
            for execution_id in APPROVAL_EXECUTIONS.values()
        ),
    ],
}


@pytest.fixture(scope="package")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """The emulator CLI in a subprocess (event log in a file the tests may read), real-time steps."""
    work = tmp_path_factory.mktemp("core")
    scenario = work / "scenario.json"
    scenario.write_text(json.dumps(SCENARIO))
    process = EmulatorProcess(
        db_path=work / "core.sqlite",
        step_seconds=STEP_SECONDS,
        extra_args=["--scenario", str(scenario)],
    )
    with process:
        yield process


@pytest.fixture(scope="package")
def airflow(emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    """A started Airflow whose ``cerebelum_default`` connection points at the emulator."""
    stack = AirflowStack(
        home=tmp_path_factory.mktemp("airflow"),
        dags_folder=REPO / "example_dags",
        extra_dag_folders={"e2e": Path(__file__).parent / "dags"},
        connections={"cerebelum_default": f"cerebelum://{emulator.address}?api=grpc&ui_url={quote(UI_URL, safe='')}"},
    )
    try:
        with stack:
            yield stack
    finally:
        logs = ARTIFACTS / "e2e-logs"
        shutil.rmtree(logs, ignore_errors=True)
        if stack.logs_dir.exists():
            shutil.copytree(stack.logs_dir, logs, dirs_exist_ok=True)
            shutil.copyfile(emulator.log_path, logs / "emulator.log")
        if (stack.home / "logs").exists():
            shutil.copytree(stack.home / "logs", logs / "task-logs", dirs_exist_ok=True)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the mark into the node id
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``--dist loadgroup``) one worker runs every test here, one Airflow after
    another: two workers would start two shared stacks, and stacks starting side by side on a
    loaded 2-core machine outlast their start-up timeout (seen with a group per stack)."""
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(item.fspath).resolve().parents:
            item.add_marker(pytest.mark.xdist_group("airflow-stack"))
    # The tests that start an Airflow of their own run first, before the shared stack is up, so
    # that the shared stack does not idle beside them.
    items.sort(key=lambda item: Path(item.fspath).name not in OWN_STACK_MODULES)
