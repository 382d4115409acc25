"""One real Airflow stack and two Core emulator processes shared by the end-to-end tests.

Starting Airflow's four services takes 30 to 60 seconds (and a minute of CPU) on a 2-core machine,
so the stack is started once for this directory and shared by every module here but
``OWN_STACK_MODULE`` (one pytest-xdist worker runs all of them), and stopped when the worker moves on
to tests elsewhere. Each test uses its own executions and connection ids so that they do not depend
on each other's order. The login is on, with an ``admin`` and a ``viewer`` (the Cerebelum pages'
test needs both): the stack's own REST calls go as the admin, and a browser logs in first
(``tests.browser.log_in``). The service logs are copied to ``test-artifacts/e2e-logs/`` at the end,
for a failure to be readable.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from airflow_stack import AirflowStack, EmulatorProcess, closed_port

from tests.browser import browser, chromium  # noqa: F401 (the browser tests' fixtures)

ARTIFACTS = REPO / "test-artifacts"
#: The module here that starts its own Airflow (PostgreSQL, two triggerers, one killed) instead of
#: the shared one, on a pytest-xdist worker of its own.
OWN_STACK_MODULE = "test_triggerer_failover_e2e.py"
#: The shared stack's users (name -> role) and its auth manager: SimpleAuthManager whose viewers
#: may read connections (tests/e2e/ui_auth_manager.py says why).
USERS = {"admin": "admin", "viewer": "viewer"}
AUTH_MANAGER = "tests.e2e.ui_auth_manager.ConnectionReaderAuthManager"

#: The connection's Core UI address, for the "Cerebelum execution" link (never requested).
UI_URL = "http://127.0.0.1:9/executions/{execution_id}"
#: Failed executions the bulk-resume DAG must resume, each exactly once.
NIGHTLY_WORKFLOW = "e2e_nightly"
NIGHTLY_FAILED = 6
#: A workflow long enough (one step per STEP_SECONDS) for the sensor to be seen deferred.
SLOW_WORKFLOW = "e2e_slow"
STEP_SECONDS = 1.0
#: A slow execution held at its second step (waiting for approval) until the deferrable sensor's
#: test approves it, once it has seen the task deferred: a running one could end between two of the
#: test's polls on a loaded machine, and the deferral go unseen.
HELD_EXECUTION = "e2e-sensor-held"
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
        {"workflow": SLOW_WORKFLOW, "execution_id": HELD_EXECUTION, "approval_at": "step_2", "settle": True},
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

#: The Cerebelum pages' Core: its executions move only when told (one step an hour, an hour's
#: sleep), two of each state, so that the dashboard's counts can be compared with Core's own.
PAGES_STEPS = ["validate", "charge", "ship", "notify"]
PAGES_SCENARIO = {
    "workflows": {"orders": PAGES_STEPS},
    "executions": [
        {"workflow": "orders", "execution_id": "ui-completed", "count": 2, "complete": True},
        {"workflow": "orders", "execution_id": "ui-running", "count": 2, "advance": 1},
        {
            "workflow": "orders",
            "execution_id": "ui-sleeping",
            "sleep_at": "charge",
            "sleep_ms": 3_600_000,
            "settle": True,
        },
        {
            "workflow": "orders",
            "execution_id": "ui-approval",
            "count": 2,
            "approval_at": "ship",
            "settle": True,
        },
        {
            "workflow": "orders",
            "execution_id": "ui-failed",
            "count": 2,
            "inputs": {"order_id": 7},
            "fail_at": "ship",
            "fail_times": 1,
            "error_kind": "carrier_unavailable",
            "error_message": "carrier API answered 503",
            "settle": True,
        },
    ],
}


@pytest.fixture(scope="package")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """The DAGs' Core: real-time steps."""
    work = tmp_path_factory.mktemp("core")
    with EmulatorProcess(
        db_path=work / "core.sqlite", step_seconds=STEP_SECONDS, scenario=SCENARIO
    ) as process:
        yield process


@pytest.fixture(scope="package")
def pages_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """The Cerebelum pages' Core (``PAGES_SCENARIO``): nothing moves unless a test acts."""
    work = tmp_path_factory.mktemp("pages-core")
    with EmulatorProcess(db_path=work / "core.sqlite", step_seconds=3600, scenario=PAGES_SCENARIO) as process:
        yield process


@pytest.fixture(scope="package")
def airflow(
    emulator: EmulatorProcess, pages_core: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowStack]:
    """A started Airflow whose ``cerebelum_default`` connection points at the DAGs' emulator, and
    whose ``cerebelum_pages*`` connections (and two that are not a Core) serve the pages' test."""
    stack = AirflowStack(
        home=tmp_path_factory.mktemp("airflow"),
        dags_folder=REPO / "example_dags",
        extra_dag_folders={"e2e": Path(__file__).parent / "dags"},
        connections={
            "cerebelum_default": f"cerebelum://{emulator.address}?api=grpc&ui_url={quote(UI_URL, safe='')}",
            "cerebelum_pages": f"cerebelum://127.0.0.1:{pages_core.http_port}",
            "cerebelum_pages_grpc": f"cerebelum://{pages_core.address}?api=grpc",
            "cerebelum_down": f"cerebelum://127.0.0.1:{closed_port()}",
            "not_cerebelum": "http://127.0.0.1:9",
        },
        users=USERS,
        extra_env={
            "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
            # The auth manager lives in tests/: the api-server imports it from the checkout.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        },
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
    """Under pytest-xdist (``--dist loadgroup``) one worker runs every test of the shared stack and
    another the failover module's: two workers would start two shared stacks. The two stacks run
    side by side (pytest-xdist hands out groups first, the largest first): the e2e tests are the
    main stage's longest path, so each stack's run is one worker's share (``AirflowStack``'s
    start-up timeout allows for a loaded machine)."""
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(item.fspath).resolve().parents:
            own = Path(item.fspath).name == OWN_STACK_MODULE
            item.add_marker(pytest.mark.xdist_group("airflow-failover" if own else "airflow-stack"))
