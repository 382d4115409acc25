"""Run a test DAG with ``dag.test()`` and read back what each task did; the one helper for the
provider tests (emulator) and the real-Core tests alike."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, NamedTuple

#: Where ``run_dag`` looks for a DAG by its id unless told otherwise.
PROVIDER_DAGS = "tests.provider.dags"
REALCORE_DAGS = "tests.realcore.dags"


class TaskOutcome(NamedTuple):
    """What one task instance of a run ended with."""

    state: str | None
    xcoms: dict[str, Any]
    try_number: int


def find_dag(dag_id: str, package: str = PROVIDER_DAGS) -> Any:
    """The DAG object named ``dag_id`` in the one module of ``package`` that defines it."""
    modules = [
        importlib.import_module(f"{package}.{module_info.name}")
        for module_info in pkgutil.iter_modules(importlib.import_module(package).__path__)
    ]
    found = [module for module in modules if hasattr(module, dag_id)]
    if len(found) != 1:
        raise LookupError(f"DAG {dag_id!r} is defined in {len(found)} modules of {package}, not one")
    return getattr(found[0], dag_id)


def run_dag(
    dag_id: str, conf: dict[str, Any] | None = None, *, package: str = PROVIDER_DAGS
) -> tuple[Any, dict[Any, TaskOutcome]]:
    """``dag.test()`` of the DAG ``dag_id`` of ``package`` with ``conf``.

    Returns:
        The DAG run, and ``{task_id: TaskOutcome}`` (a mapped task instance under
        ``(task_id, map_index)``) with every XCom of the task instance by key.
    """
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    run = find_dag(dag_id, package).test(run_conf=conf or {})
    results: dict[Any, TaskOutcome] = {}
    with create_session() as session:
        for ti in run.get_task_instances():
            rows = session.query(XComModel).filter_by(
                dag_id=run.dag_id, run_id=run.run_id, task_id=ti.task_id, map_index=ti.map_index
            )
            xcoms = {row.key: XComModel.deserialize_value(row) for row in rows}
            key = ti.task_id if ti.map_index < 0 else (ti.task_id, ti.map_index)
            results[key] = TaskOutcome(ti.state, xcoms, ti.try_number)
    return run, results


def run_realcore_dag(dag_id: str, conf: dict[str, Any] | None = None) -> tuple[Any, dict[Any, TaskOutcome]]:
    """``run_dag`` of a DAG of tests/realcore/dags."""
    return run_dag(dag_id, conf, package=REALCORE_DAGS)


def output_of(capfd: Any, caplog: Any = None) -> str:
    """Everything the test printed since the last call (Airflow's structlog writes to the terminal),
    and what the stdlib logged into ``caplog`` when given."""
    captured = capfd.readouterr()
    return captured.out + captured.err + (caplog.text if caplog is not None else "")
