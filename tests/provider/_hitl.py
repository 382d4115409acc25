"""Answer a human-in-the-loop request of a running ``dag.test()`` the way the Required Actions page does.

A helper thread waits until the task has written its request (and parked: AWAITING_INPUT on
Airflow 3.3, DEFERRED on the HITL trigger before), then calls the public API's own
``update_hitl_detail`` route function with a user, as a ``PATCH .../hitlDetails`` would; on 3.3 that
call is what resumes the task. ``expired_requests_swept`` runs the scheduler's own sweep of expired requests
(dag.test() has no scheduler).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_PARKED = ("awaiting_input", "deferred")
#: The pytest-xdist group of the tests that answer requests (they share the route import).
HITL_GROUP = "hitl"
SETTLE_SECONDS = 1.0


def _imported_before_any_thread(answering: bool = True) -> None:
    """Import and map, in the calling thread, every Airflow model the helper threads use, and the
    public API's HITL route when the helper will answer (it builds every public route: 3 to 5 CPU s).

    A helper thread that imported a module or configured SQLAlchemy's mappers (under its global
    mutex) while ``dag.test()`` imported and mapped Airflow models in the main thread deadlocked
    the two (seen once in CI): both context managers call this before they start their thread.
    """
    if answering:
        import airflow.api_fastapi.core_api.routes.public.hitl
    import airflow.jobs.job
    import airflow.jobs.scheduler_job_runner
    import airflow.models.hitl
    import airflow.models.taskinstance  # noqa: F401
    from sqlalchemy.orm import configure_mappers

    configure_mappers()


def _waiting_request_models() -> tuple[Any, Any]:
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance

    return HITLDetail, TaskInstance


def _waiting_request(dag_id: str, task_id: str, session: Any) -> tuple[Any, Any] | None:
    from sqlalchemy import select

    HITLDetail, TaskInstance = _waiting_request_models()

    ti = session.scalar(
        select(TaskInstance)
        .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
        .where(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id)
        .where(TaskInstance.state.in_(_PARKED), HITLDetail.responded_at.is_(None))
    )
    if ti is None:
        return None
    return ti, session.scalar(select(HITLDetail).where(HITLDetail.ti_id == ti.id))


@contextlib.contextmanager
def answered(
    dag_id: str,
    task_id: str,
    chosen: str | None,
    params_input: dict[str, Any] | None = None,
    user: str = "alice",
) -> Iterator[dict[str, Any]]:
    """Answer the task's request with ``chosen`` (None: never answer, only record the request).

    Yields a dict that receives the request as the task wrote it (``subject``, ``body``,
    ``options``, ``params``).
    """
    from airflow.utils.session import create_session

    if chosen is not None:  # imported before the helper thread starts (_imported_before_any_thread)
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
        from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    _imported_before_any_thread(answering=chosen is not None)
    seen: dict[str, Any] = {}
    stop = threading.Event()

    def answer() -> None:
        parked_since_check = False
        while not stop.wait(SETTLE_SECONDS):
            with create_session() as session:
                found = _waiting_request(dag_id, task_id, session)
                # Answer on the second sight: dag.test() writes the parked task instance once more
                # right after it parks, which would undo an answer given in between.
                parked_since_check, seen_twice = found is not None, parked_since_check and found is not None
                if found is None:
                    continue
                ti, detail = found
                seen.update(
                    subject=detail.subject,
                    body=detail.body,
                    options=list(detail.options),
                    params=dict(detail.params or {}),
                )
                if chosen is None:
                    return
                if not seen_twice:
                    continue
                update_hitl_detail(
                    dag_id=ti.dag_id,
                    dag_run_id=ti.run_id,
                    task_id=ti.task_id,
                    update_hitl_detail_payload=UpdateHITLDetailPayload(
                        chosen_options=[chosen], params_input=params_input or {}
                    ),
                    user=SimpleAuthManagerUser(username=user, role="admin"),
                    session=session,
                    map_index=ti.map_index,
                )
                return

    helper = threading.Thread(target=answer, daemon=True)
    helper.start()
    try:
        yield seen
    finally:
        stop.set()
        helper.join()


@contextlib.contextmanager
def expired_requests_swept() -> Iterator[None]:
    """Run the scheduler's sweep of expired human-in-the-loop requests while the block runs."""
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    if not hasattr(SchedulerJobRunner, "check_awaiting_input_timeouts"):
        yield  # before Airflow 3.3 the HITL trigger ends an expired request itself
        return
    from airflow.jobs.job import Job

    _imported_before_any_thread()
    runner = SchedulerJobRunner(job=Job())
    stop = threading.Event()

    def sweep() -> None:
        while not stop.wait(0.2):
            runner.check_awaiting_input_timeouts()

    sweeper = threading.Thread(target=sweep, daemon=True)
    sweeper.start()
    try:
        yield
    finally:
        stop.set()
        sweeper.join()
