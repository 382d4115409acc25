"""Rerun on the real Cerebelum Core, release be56c90: what resume cannot do there, done by a new execution.

This release resumes nothing: a FAILED execution answers "already_running" (REST 422) and stays
FAILED. With ``on_not_resumed="rerun"`` the resume operator and the bulk resume start the workflow
again with the failed execution's inputs, read from its event log (``ExecutionStartedEvent``:
``blueprint_name`` and ``inputs``). The SDK worker's ``boom`` step raises while the stack's boom
flag exists: each test makes its executions fail, removes the flag ("the step now succeeds") and
reruns them; the worker's log shows which steps ran for which execution, and Core's list counts
the executions of each test's own workflow, so "started nothing" is Core's word, not ours.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from real_core import RealCore

from tests.airflow_env import add_dag_bundles, configure_airflow_home, migrate_airflow_db
from tests.dagrun import output_of, run_realcore_dag

DAGS = Path(__file__).parent / "dags"
# Airflow reads its home when first imported: before anything below imports it.
configure_airflow_home()
add_dag_bundles(("realcore-rerun", DAGS))

from cerebelum_provider.client import RERUN_OF_INPUT  # noqa: E402
from tests.realcore.dags import realcore_rerun_dags as dags  # noqa: E402

pytestmark = [pytest.mark.realcore, pytest.mark.shares_real_core, pytest.mark.timeout(180)]

#: The Core release whose behaviour these tests pin.
RELEASE = "be56c90"
STEPS = ("ok_a", "boom")
#: Seconds for the idle worker (it polls Core every 2 s at most) to have run any step Core queued.
QUIET_PERIOD = 1.5


@pytest.fixture(scope="module")
def core(real_core: RealCore) -> Iterator[RealCore]:
    """The module's real Core, checked to be the pinned release, behind the HTTP connection."""
    assert real_core.release == RELEASE, (
        f"these tests pin what Core {RELEASE} does; the release here is {real_core.release}"
    )
    name = f"AIRFLOW_CONN_{dags.HTTP_CONN_ID.upper()}"
    os.environ[name] = real_core.airflow_connection_uri("http")
    try:
        yield real_core
    finally:
        os.environ.pop(name, None)
        real_core.set_boom_failing(True)


@pytest.fixture(scope="module")
def airflow(core: RealCore) -> RealCore:
    """The real Core, with a migrated Airflow metadata database for dag.test()."""
    migrate_airflow_db()
    return core


def failed_executions(core: RealCore, workflow: str, count: int) -> list[str]:
    """``count`` executions of ``workflow`` FAILED at ``boom``, each with inputs of its own."""
    core.add_blueprint(workflow, STEPS)
    core.set_boom_failing(True)
    ids = []
    for n in range(count):
        execution_id = core.start_execution(workflow, {"case": str(uuid.uuid4()), "n": n, "express": True})
        core.wait_for_state(execution_id, {"failed"})
        core.wait_for_event(execution_id, "ExecutionFailedEvent")
        ids.append(execution_id)
    core.set_boom_failing(False)
    return ids


def started_inputs(core: RealCore, execution_id: str) -> dict[str, Any]:
    (started,) = [event for event in core.events(execution_id) if event["type"] == "ExecutionStartedEvent"]
    return started["data"]["inputs"]


def test_resume_operator_reruns_a_failed_execution_whose_step_now_succeeds(
    airflow: RealCore, capfd, caplog
) -> None:
    workflow = "rc_rerun_one"
    (failed,) = failed_executions(airflow, workflow, 1)

    _, results = run_realcore_dag("realcore_rerun", {"execution_id": failed})

    said = output_of(capfd, caplog)
    state, xcoms, _ = results["resume"]
    assert state == "success", said[-3000:]
    result = xcoms["return_value"]
    rerun = result["rerun_execution_id"]
    # The old execution is named in the result; the wait followed the new one to its end.
    assert result["execution_id"] == failed and result["resume_status"] == "already_running"
    assert (
        result["execution"]["execution_id"] == rerun
        and result["execution"]["status"] == "EXECUTION_COMPLETED"
    )
    assert airflow.execution(rerun)["state"] == "completed"
    assert airflow.execution(failed)["state"] == "failed"
    # Core's event store wrote True as "true": the rerun runs with the inputs as Core stored them.
    original_inputs = started_inputs(airflow, failed)
    assert original_inputs["express"] == "true"
    assert started_inputs(airflow, rerun) == {**original_inputs, RERUN_OF_INPUT: failed}
    assert f"its rerun {rerun} was started" in said and "every step runs again" in said
    time.sleep(QUIET_PERIOD)
    assert airflow.steps_run(rerun) == ["ok_a", "boom"]  # every step again, the completed ok_a too
    assert airflow.steps_run(failed) == ["ok_a", "boom"]  # the failed one ran nothing more
    assert airflow.executions_total(workflow) == 2


def test_bulk_reruns_three_failed_executions_once_and_a_second_run_none(
    airflow: RealCore, capfd, caplog
) -> None:
    workflow = "rc_rerun_bulk"
    failed = sorted(failed_executions(airflow, workflow, 3))

    _, dry = run_realcore_dag("realcore_bulk_rerun", {"workflow_name": workflow, "plan_only": True})
    assert airflow.executions_total(workflow) == 3  # the dry run started nothing
    _, first = run_realcore_dag("realcore_bulk_rerun", {"workflow_name": workflow})
    reruns = first["bulk_resume"][1]["return_value"]["rerun"]
    for rerun in reruns.values():
        airflow.wait_for_state(rerun, {"completed"})
    _, second = run_realcore_dag("realcore_bulk_rerun", {"workflow_name": workflow})

    said = output_of(capfd, caplog)
    dry_summary = dry["bulk_resume"][1]["return_value"]
    assert dry_summary["dry_run"] is True
    assert sorted(dry_summary["would_rerun"]) == sorted(dry_summary["would_resume"]) == failed
    assert first["bulk_resume"][0] == "success", said[-3000:]
    summary = first["bulk_resume"][1]["return_value"]
    assert sorted(reruns) == failed and len(set(reruns.values())) == 3
    assert summary["resumed"] == summary["already_running"] == summary["not_resumed"] == []
    assert summary["errors"] == {}
    second_summary = second["bulk_resume"][1]["return_value"]
    assert second["bulk_resume"][0] == "success", said[-3000:]
    assert second_summary["rerun"] == {} and second_summary["already_rerun"] == reruns
    assert airflow.executions_total(workflow) == 6  # three failed, three reruns: each rerun once
    for execution_id, rerun in reruns.items():
        assert airflow.execution(execution_id)["state"] == "failed"
        assert started_inputs(airflow, rerun)[RERUN_OF_INPUT] == execution_id
        assert f"Cerebelum execution {execution_id} was not resumed; its rerun {rerun} was started" in said
    time.sleep(QUIET_PERIOD)
    assert [airflow.steps_run(rerun) for rerun in reruns.values()] == [["ok_a", "boom"]] * 3
