"""Operators that act on Cerebelum executions: resume one, resume many, start a workflow, approve.

Each operator holds ids and options and asks ``CerebelumHook`` for a client; the hook is the only
place that reads the connection, so the token never reaches an operator attribute, a rendered
field, XCom or a log line. grpc, protobuf and tenacity are imported inside ``execute`` only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from cerebelum_provider._arguments import (
    DEFAULT_CONN_ID,
    check_bool,
    check_conn_id_argument,
    check_execution_id,
    check_execution_id_argument,
    check_on_not_resumed,
    check_tags,
    coerce_states,
    is_jinja,
    is_template_value,
    positive_seconds,
)
from cerebelum_provider._outage import DEFAULT_UNAVAILABLE_TIMEOUT, Outage
from cerebelum_provider._outcome import task_arguments, task_errors, task_outcome
from cerebelum_provider.bulk import (
    DEFAULT_RESUME_CHECK_GRACE,
    check_resume_check_grace,
    rerun_message,
    validate_request,
)
from cerebelum_provider.links.cerebelum import (
    CerebelumExecutionLink,
    publish_execution_id,
    remember_execution_id,
)
from cerebelum_provider.models import ExecutionState, ExecutionStatus
from cerebelum_provider.operators._common import (
    DEFAULT_WAIT_TIMEOUT,
    ExecutionWaitTimeout,
    check_once,
    deferral_timeout,
    finish,
    resolve_deferrable,
    resume_checked,
    task_hook,
    wait_in_worker,
    wait_limit,
)
from cerebelum_provider.triggers.event import EventStatus, ExecutionTriggerEvent

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from cerebelum_provider.bulk import BulkResumeSummary
    from cerebelum_provider.client import SyncExecutionClient
    from cerebelum_provider.hooks.cerebelum import CerebelumHook

__all__ = [
    "DEFAULT_CONN_ID",
    "CerebelumApproveExecutionOperator",
    "CerebelumBulkResumeOperator",
    "CerebelumExecuteWorkflowOperator",
    "CerebelumResumeExecutionOperator",
]

DEFAULT_POLL_INTERVAL = 30.0
#: Input field that ties an execution to the Airflow task instance that started it.
CORRELATION_INPUT = "_airflow_correlation_id"
#: task_state_store key under which the execute operator keeps the id of the execution it started.
STATE_STORE_KEY = "cerebelum_execution_id"
#: What the execute operator does on a retry whose earlier execution ended: resume it, or start over.
ON_RETRY_CHOICES = ("resume", "restart")
_ALIVE_STATES = (
    ExecutionState.RUNNING,
    ExecutionState.SLEEPING,
    ExecutionState.WAITING_FOR_APPROVAL,
    ExecutionState.PAUSED,
)


class CerebelumBaseOperator(BaseOperator):
    """What every Cerebelum operator has: the connection id, the hook built from it, the colour.

    The hook is the only place that reads the connection (so no secret reaches an operator
    attribute); it is built once per task, from the rendered ``cerebelum_conn_id`` (a template
    field of every operator). ``deferrable=None`` means ``[operators] default_deferrable``, read
    when the operator is built.
    """

    ui_color = "#d9ecff"

    def __init__(self, *, cerebelum_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cerebelum_conn_id = check_conn_id_argument(cerebelum_conn_id)

    @cached_property
    def hook(self) -> CerebelumHook:
        """The hook for the rendered ``cerebelum_conn_id``; a bad id fails the task without retries."""
        return task_hook(self.cerebelum_conn_id)


class _CerebelumWaitingOperator(CerebelumBaseOperator):
    """Waiting options and the wait itself, shared by the operators that act on one execution.

    A wait lasts at most ``timeout`` seconds (7 days by default, as Airflow's sensors), or the
    task's ``execution_timeout`` when that is shorter, in the worker and deferred alike: a
    deferred wait hands that deadline to the trigger and to ``defer(timeout=...)``. Core
    unreachable is ridden out for ``unavailable_timeout`` seconds (15 minutes by default; None:
    until the deadline), then the task fails with ``CoreUnavailableError`` saying since when and
    at which address (Airflow's retries apply). The step outputs reach XCom only with
    ``include_outputs`` (bounded in size).
    """

    operator_extra_links = (CerebelumExecutionLink(),)

    def __init__(
        self,
        *,
        cerebelum_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool,
        deferrable: bool | None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        include_outputs: bool = False,
        unavailable_timeout: float | None = DEFAULT_UNAVAILABLE_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(cerebelum_conn_id=cerebelum_conn_id, **kwargs)
        self.wait_for_completion = check_bool(wait_for_completion, field_name="wait_for_completion")
        self.deferrable = resolve_deferrable(deferrable)
        self.poll_interval = positive_seconds(poll_interval, "poll_interval")
        self.timeout = positive_seconds(timeout, "timeout", allow_none=True) or DEFAULT_WAIT_TIMEOUT
        self.include_outputs = check_bool(include_outputs, field_name="include_outputs")
        self.unavailable_timeout = positive_seconds(
            unavailable_timeout, "unavailable_timeout", allow_none=True
        )

    def _wait(
        self, client: SyncExecutionClient, execution_id: str, *, stop_on_kill: bool = False
    ) -> dict[str, Any]:
        """Wait for the execution: in the worker, or by deferring to the trigger after one check.

        ``stop_on_kill`` hands the trigger the duty to stop the execution when a user kills the
        deferred task (only for an execution this task started).
        """
        from cerebelum_provider.client import calls_end_within
        from cerebelum_provider.exceptions import CoreUnavailableError

        limit = wait_limit(self.timeout, self.execution_timeout)
        if not self.deferrable:
            return wait_in_worker(
                client,
                execution_id,
                poll_interval=self.poll_interval,
                timeout=limit,
                log=self.log,
                include_outputs=self.include_outputs,
                unavailable_timeout=self.unavailable_timeout,
            )
        # The deadline counts from here, not from after the first check (the client's retries).
        end_time = time.time() + limit
        outage = Outage(self.unavailable_timeout)
        try:
            with calls_end_within(limit):
                execution = check_once(client, execution_id, outage, self.log)
        except CoreUnavailableError as error:
            # The trigger rides the outage out, counted from this first failed check.
            self.log.warning(
                "%s (%s); waiting in the triggerer", outage.describe(client.address), error.message
            )
        else:
            if execution.status.is_terminal:
                return finish(execution, include_outputs=self.include_outputs)
        self._defer_until(
            execution_id,
            success_states=(ExecutionState.COMPLETED,),
            failure_states=(ExecutionState.FAILED,),
            method_name="execute_complete",
            stop_on_kill=stop_on_kill,
            unavailable_since=outage.since_epoch,
            end_time=end_time,
        )
        return {}  # not reached: defer() raises TaskDeferred

    def _defer_until(
        self,
        execution_id: str,
        *,
        success_states: tuple[ExecutionState, ...],
        failure_states: tuple[ExecutionState, ...],
        method_name: str,
        stop_on_kill: bool = False,
        unavailable_since: float | None = None,
        end_time: float | None = None,
    ) -> None:
        """Defer to ``CerebelumExecutionTrigger`` until the execution reaches one of the states, or
        the wait's limit passes (at ``end_time``, epoch seconds, when the wait began before: else
        counted from now); ``method_name`` gets the trigger's event."""
        from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger

        if end_time is None:
            end_time = time.time() + wait_limit(self.timeout, self.execution_timeout)
        # The trigger ends the wait at the deadline with the last state it saw; Airflow's own
        # deferral timeout, a little later, only backs it up.
        self.defer(
            trigger=CerebelumExecutionTrigger(
                execution_id=execution_id,
                cerebelum_conn_id=self.cerebelum_conn_id,
                poll_interval=self.poll_interval,
                success_states=tuple(state.name for state in success_states),
                failure_states=tuple(state.name for state in failure_states),
                end_time=end_time,
                stop_on_kill=stop_on_kill,
                include_outputs=self.include_outputs,
                unavailable_timeout=self.unavailable_timeout,
                unavailable_since=unavailable_since,
            ),
            method_name=method_name,
            timeout=deferral_timeout(end_time),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Called when the trigger fires: the final execution dict, or the task fails with the reason."""
        remember_execution_id(self, event)
        result = task_outcome(event, failure_is_final=False)
        self.log.info("Cerebelum execution %s finished: %s", result.get("execution_id"), result.get("status"))
        return result


class CerebelumResumeExecutionOperator(_CerebelumWaitingOperator):
    """Resume one execution (typically a FAILED one) and optionally wait for it to finish.

    An execution already COMPLETED succeeds with the verdict ``"already_completed"``: nothing runs
    again. ``"failed_to_resume"`` for any other (unknown id, any other refusal) fails the task
    without Airflow's retries, as does one still FAILED after the check.
    ``"resumed"`` and ``"already_running"`` are checked, never assumed: ``resume_check_grace``
    seconds later (0: at once) the execution is read back, and one still FAILED fails the task with
    Core's answer and error (the released Core answers "already_running" for a FAILED execution
    until it restarts, and "resumed" after a restart, and runs nothing again either way). An
    execution that really resumed but failed again within the grace reads the same, and fails the
    task the same way. A check that cannot be read fails the task with the reason. Transient errors
    are retried (resuming twice is safe: the second call answers ``"already_running"``).

    ``on_not_resumed="rerun"`` (HTTP API only; over gRPC the task fails before anything is sent)
    reruns an execution still FAILED instead of failing: a new execution of its workflow with its
    inputs from its event log, in which every step runs again, completed ones included (a warning
    in the task log says so). A retry finds the rerun an earlier try started instead of starting
    another; the wait follows the rerun, and the failed execution stays FAILED.

    Returns (XCom):
        ``{"execution_id", "resume_status"}``, plus ``"rerun_execution_id"`` (also under that XCom
        key) when it was rerun, and ``"execution"`` (the final execution dict of the one waited
        for: the rerun when there is one) when ``wait_for_completion`` is set.
    """

    template_fields: Sequence[str] = ("execution_id", "cerebelum_conn_id")

    def __init__(
        self,
        *,
        execution_id: str,
        cerebelum_conn_id: str = DEFAULT_CONN_ID,
        skip_completed_steps: bool = True,
        wait_for_completion: bool = False,
        deferrable: bool | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        resume_check_grace: float = DEFAULT_RESUME_CHECK_GRACE,
        on_not_resumed: str = "fail",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            cerebelum_conn_id=cerebelum_conn_id,
            wait_for_completion=wait_for_completion,
            deferrable=deferrable,
            poll_interval=poll_interval,
            timeout=timeout,
            **kwargs,
        )
        self.execution_id = check_execution_id_argument(execution_id)
        self.skip_completed_steps = check_bool(skip_completed_steps, field_name="skip_completed_steps")
        self.resume_check_grace = check_resume_check_grace(resume_check_grace)
        self.on_not_resumed = check_on_not_resumed(on_not_resumed)

    def execute(self, context: Context) -> dict[str, Any]:
        with task_arguments():
            execution_id = check_execution_id(self.execution_id)
        publish_execution_id(self, context, execution_id)
        with self.hook.get_client() as client:
            outcome = resume_checked(
                client,
                execution_id,
                skip_completed_steps=self.skip_completed_steps,
                grace=self.resume_check_grace,
                log=self.log,
                on_not_resumed=self.on_not_resumed,
            )
            result: dict[str, Any] = {"execution_id": execution_id, "resume_status": outcome.answer}
            waited_for = execution_id
            if outcome.rerun is not None:
                waited_for = result["rerun_execution_id"] = outcome.rerun.rerun_execution_id
                context["ti"].xcom_push(key="rerun_execution_id", value=waited_for)
            if not self.wait_for_completion:
                return result
            # Kept in XCom (which survives deferral) for execute_complete: dag.test() does not
            # hand defer()'s kwargs back with the event, the triggerer does.
            context["ti"].xcom_push(key="resume_status", value=outcome.answer)
            result["execution"] = self._wait(client, waited_for)
            return result

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Called when the trigger fires: ``{"execution_id", "resume_status", "execution"}``, plus
        ``"rerun_execution_id"`` when the execution waited for is a rerun."""
        execution = super().execute_complete(context, event)
        ti = context["ti"]
        result = {
            "execution_id": ti.xcom_pull(task_ids=self.task_id, key="execution_id"),
            "resume_status": ti.xcom_pull(task_ids=self.task_id, key="resume_status"),
            "execution": execution,
        }
        rerun_execution_id = ti.xcom_pull(task_ids=self.task_id, key="rerun_execution_id")
        if rerun_execution_id is not None:
            result["rerun_execution_id"] = rerun_execution_id
        return result

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """OpenLineage: Core as namespace, the resumed execution's workflow as job (see ``_lineage``)."""
        from cerebelum_provider._lineage import single_execution_lineage

        return single_execution_lineage(self.hook, task_instance, workflow_name=None)


class CerebelumBulkResumeOperator(CerebelumBaseOperator):
    """Resume every execution of a workflow (or of all workflows) that is in ``states``.

    Each matching execution is resumed at most once per run and none is skipped, although every
    resumed execution leaves the FAILED set while Core's listing order moves (see
    ``cerebelum_provider.bulk``). Up to ``max_concurrency`` resumes run at once while the listing
    goes on; progress counts are logged as it runs. After trying everything, the task fails when
    ``fail_on_error`` is set and any execution was refused, not resumed or errored.

    Every ``"resumed"`` or ``"already_running"`` is checked, never assumed: ``resume_check_grace``
    seconds later (0: at once) the execution is read back, and one still FAILED is counted under
    ``not_resumed`` (the released Core gives both answers for FAILED executions it runs nothing
    again for). The checks wait out their grace side by side and share ``max_concurrency`` with
    the resumes; a check that cannot be read lands in ``errors``.

    A resume whose answer was lost in the network is retried and then answers
    ``"already_running"``: it is counted under ``already_running`` (it is running again either way).

    ``on_not_resumed="rerun"`` (HTTP API only; over gRPC the task fails before anything is sent)
    reruns each execution still FAILED after its check, once: a new execution of its workflow with
    its inputs, in which every step runs again (a warning per rerun in the task log). The summary
    lists it under ``rerun`` (``{failed id: new id}``), or under ``already_rerun`` when an earlier
    run (or try) started that rerun: it is found, not started again. Neither counts as resumed, nor
    as a failure.

    ``plan_only=True`` is a dry run: it lists what would be resumed (``would_resume``) and, with
    ``on_not_resumed="rerun"``, what would be rerun if Core does not resume it (``would_rerun``: no
    rerun yet), and starts nothing. (It was called ``dry_run``, which shadowed
    ``BaseOperator.dry_run()``; that name is refused with a TypeError naming this one.)

    ``workflow_name``, ``plan_only`` and ``cerebelum_conn_id`` are templated;
    ``.expand(workflow_name=[...])`` splits one bulk resume over mapped task instances.

    Returns (XCom):
        The summary: ``matched``, the id lists ``resumed``, ``already_running``,
        ``failed_to_resume``, ``not_resumed``, ``would_resume`` and ``would_rerun`` (``plan_only``),
        ``rerun`` and ``already_rerun`` (``{failed id: rerun id}``), ``errors`` by id, and
        ``dry_run`` (true when ``plan_only`` was set).
        When the task fails on errors, the same summary is pushed under the key ``"summary"``.
    """

    template_fields: Sequence[str] = ("workflow_name", "plan_only", "cerebelum_conn_id")
    # No "Cerebelum execution" link: a bulk run has no one execution to link to (and a link with
    # nothing published only logs "XCom not found" errors).
    #: Seconds between two progress lines in the task log.
    progress_log_interval: ClassVar[float] = 10.0

    def __init__(
        self,
        *,
        workflow_name: str | None = None,
        states: Any = (ExecutionState.FAILED,),
        max_executions: int | None = None,
        max_concurrency: int = 16,
        skip_completed_steps: bool = True,
        plan_only: bool = False,
        fail_on_error: bool = True,
        cerebelum_conn_id: str = DEFAULT_CONN_ID,
        resume_check_grace: float = DEFAULT_RESUME_CHECK_GRACE,
        on_not_resumed: str = "fail",
        **kwargs: Any,
    ) -> None:
        if "dry_run" in kwargs:
            raise TypeError(
                "CerebelumBulkResumeOperator: dry_run was renamed plan_only (it shadowed "
                f"BaseOperator.dry_run()); pass plan_only={kwargs['dry_run']!r} instead"
            )
        super().__init__(cerebelum_conn_id=cerebelum_conn_id, **kwargs)
        self.workflow_name = workflow_name
        # States are kept as names: plain strings serialize with the DAG.
        self.states = [state.name for state in coerce_states(states, allow_unspecified=False)]
        self.max_executions = max_executions
        self.max_concurrency = max_concurrency
        self.skip_completed_steps = skip_completed_steps
        self.plan_only = plan_only
        self.fail_on_error = check_bool(fail_on_error, field_name="fail_on_error")
        self.resume_check_grace = check_resume_check_grace(resume_check_grace)
        self.on_not_resumed = check_on_not_resumed(on_not_resumed)
        # Templated values ("{{ params.plan_only }}", an XComArg) are checked again once rendered.
        self._validate(
            workflow_name=None if is_template_value(workflow_name) else workflow_name,
            plan_only=False if is_template_value(plan_only) or is_jinja(plan_only) else plan_only,
        )

    def _validate(self, *, workflow_name: object, plan_only: object) -> None:
        validate_request(
            workflow_name=workflow_name,
            states=self.states,
            max_executions=self.max_executions,
            max_concurrency=self.max_concurrency,
            skip_completed_steps=self.skip_completed_steps,
            dry_run=check_bool(plan_only, field_name="plan_only"),
            resume_check_grace=self.resume_check_grace,
            on_not_resumed=self.on_not_resumed,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        import asyncio

        with task_arguments():
            self._validate(workflow_name=self.workflow_name, plan_only=self.plan_only)
        which = f"workflow {self.workflow_name!r}" if self.workflow_name else "every workflow"
        self.log.info(
            "Bulk resume of %s in states %s (max_concurrency=%d%s%s)",
            which,
            ", ".join(self.states),
            self.max_concurrency,
            f", max_executions={self.max_executions}" if self.max_executions else "",
            ", plan only (nothing is resumed)" if self.plan_only else "",
        )
        with task_errors():
            summary = asyncio.run(self._resume_all())
        self.log.info("Bulk resume of %s done: %s", which, summary.describe())
        if summary.errors:
            for execution_id, message in list(summary.errors.items())[:10]:
                self.log.warning("Execution %s not resumed: %s", execution_id, message)
        if summary.not_resumed:
            self.log.warning(
                "%d execution(s) still FAILED %s s after Core answered 'resumed' or 'already_running' "
                "(Core did not resume them, or they failed again at once), e.g. %s",
                len(summary.not_resumed),
                self.resume_check_grace,
                ", ".join(summary.not_resumed[:10]),
            )
        self._log_reruns(summary)
        result = summary.to_dict()
        if self.fail_on_error and summary.failed:
            context["ti"].xcom_push(key="summary", value=result)
            raise AirflowException(
                f"Bulk resume of {which} did not resume everything: {summary.describe()} "
                "(the full summary is in XCom under the key 'summary')"
            )
        return result

    async def _resume_all(self) -> BulkResumeSummary:
        from cerebelum_provider.bulk import resume_matching

        # asyncio.run made a new loop, so the hook hands out a client bound to this loop alone;
        # the hook closes it when asyncio.run shuts the loop down.
        client = await self.hook.get_async_client()
        return await resume_matching(
            client,
            workflow_name=self.workflow_name,
            states=self.states,
            max_executions=self.max_executions,
            max_concurrency=self.max_concurrency,
            skip_completed_steps=self.skip_completed_steps,
            dry_run=self.plan_only,
            on_progress=self._progress_logger(),
            resume_check_grace=self.resume_check_grace,
            on_not_resumed=self.on_not_resumed,
        )

    def _log_reruns(self, summary: BulkResumeSummary) -> None:
        for started, reruns in ((True, summary.rerun), (False, summary.already_rerun)):
            for execution_id, rerun_execution_id in reruns.items():
                self.log.warning(
                    "%s",
                    rerun_message(
                        execution_id, rerun_execution_id, started=started, workflow_name=self.workflow_name
                    ),
                )
        if summary.would_rerun:
            self.log.info(
                "Dry run: %d execution(s) would be rerun (every step again) if Core does not resume them: %s",
                len(summary.would_rerun),
                ", ".join(summary.would_rerun),
            )

    def _progress_logger(self) -> Callable[[dict[str, int]], None]:
        last_logged = time.monotonic()

        def log_progress(counts: dict[str, int]) -> None:
            nonlocal last_logged
            now = time.monotonic()
            if now - last_logged >= self.progress_log_interval:
                last_logged = now
                self.log.info("Bulk resume progress: %s", ", ".join(f"{k}={v}" for k, v in counts.items()))

        return log_progress

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """OpenLineage: Core as namespace, the workflow as job, the resumed executions (see ``_lineage``)."""
        from cerebelum_provider._lineage import bulk_lineage

        return bulk_lineage(self.hook, task_instance, workflow_name=self.workflow_name)


class CerebelumExecuteWorkflowOperator(_CerebelumWaitingOperator):
    """Start a workflow on Core and, by default, wait for the execution to finish.

    The new execution's id is pushed to XCom (key ``"execution_id"``) before waiting. Core
    ignores client-chosen ids, so a retried start would run the workflow twice, completed steps
    included. Instead, an Airflow retry (or a re-run) of the same task instance continues the
    execution an earlier try started, found in two places, in this order:

    1. Airflow's ``task_state_store`` (Airflow 3.3+), where the id is written right after the
       start; it survives retries, while XCom is cleared at the start of each try.
    2. Core itself, when the id never reached the store (the worker died, or Core's answer to
       the start was lost): the executions of the workflow are listed and the one whose input
       ``_airflow_correlation_id`` names this task instance is taken.

    What the retry does with it depends on its state and on ``on_retry``:

    - still alive (running, sleeping, waiting for approval, paused): re-attach and wait;
    - FAILED, ``on_retry="resume"`` (the default): resume it, checked like
      ``CerebelumResumeExecutionOperator`` (completed steps are not run again), and wait; when
      Core refuses or the execution stays FAILED the task fails, saying so: it never starts a new
      execution that would run the completed steps again, unless ``on_not_resumed="rerun"`` (HTTP
      API only): then the execution still FAILED is rerun once (a new execution with its inputs,
      every step again; a later retry finds that rerun) and the task waits for the rerun, whose id
      becomes the task's ``execution_id`` (the failed one is in XCom under ``rerun_of``);
    - COMPLETED, ``on_retry="resume"``: re-attach (the task succeeds with it, nothing runs again);
    - ended, ``on_retry="restart"``: start a new execution (the workflow runs from the start).

    ``reattach_on_retry=False`` turns all of this off (every try starts a new execution) and
    leaves the inputs untouched.

    ``correlation_id`` (sent in the start options) defaults to
    ``"airflow:{dag_id}:{run_id}:{task_id}:{map_index}"``; the ``_airflow_correlation_id`` input
    always carries that task-instance identity, whatever ``correlation_id`` says. Core's HTTP API
    starts a workflow from its name and inputs only: over it the identity travels in the input
    alone, a ``correlation_id`` or ``tags`` you set are not sent (a warning in the task log says
    so), and the execution is found again through its event log.

    The operator owns the execution it started. With ``stop_on_kill`` (the default), a user who
    marks the task failed or clears it while it waits (in the worker, or deferred on Airflow 3.3+)
    stops that execution; stopping needs Core's HTTP API, so over gRPC the operator only logs a
    warning naming the execution it leaves running.

    Returns (XCom):
        The final execution dict when waiting, else the execution as Core reports it just after start.
    """

    template_fields: Sequence[str] = (
        "workflow_name",
        "inputs",
        "correlation_id",
        "tags",
        "cerebelum_conn_id",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"inputs": "json"}

    def __init__(
        self,
        *,
        workflow_name: str,
        inputs: dict[str, Any] | None = None,
        correlation_id: str | None = None,
        tags: Sequence[str] | None = None,
        cerebelum_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool = True,
        deferrable: bool | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        reattach_on_retry: bool = True,
        on_retry: str = "resume",
        resume_check_grace: float = DEFAULT_RESUME_CHECK_GRACE,
        on_not_resumed: str = "fail",
        stop_on_kill: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            cerebelum_conn_id=cerebelum_conn_id,
            wait_for_completion=wait_for_completion,
            deferrable=deferrable,
            poll_interval=poll_interval,
            timeout=timeout,
            **kwargs,
        )
        self.workflow_name = workflow_name
        self.inputs = inputs
        self.correlation_id = correlation_id
        self.tags = tags
        self.reattach_on_retry = check_bool(reattach_on_retry, field_name="reattach_on_retry")
        if on_retry not in ON_RETRY_CHOICES:
            raise ValueError(f"on_retry must be one of {ON_RETRY_CHOICES}, got {on_retry!r}")
        self.on_retry = on_retry
        self.resume_check_grace = check_resume_check_grace(resume_check_grace)
        self.on_not_resumed = check_on_not_resumed(on_not_resumed)
        self.stop_on_kill = check_bool(stop_on_kill, field_name="stop_on_kill")
        #: The execution this task instance started or re-attached to, for on_kill.
        self._own_execution_id: str | None = None
        self._check_arguments(skip_templates=True)

    def _check_arguments(self, *, skip_templates: bool) -> None:
        def known(value: object) -> bool:
            return not (skip_templates and (is_template_value(value) or is_jinja(value)))

        if known(self.workflow_name):
            check_execution_id(self.workflow_name, field_name="workflow_name")
        if known(self.inputs) and self.inputs is not None:
            if not isinstance(self.inputs, dict):
                raise TypeError(
                    f"inputs must be a dict or None, got {type(self.inputs).__name__} {self.inputs!r}"
                )
            if self.reattach_on_retry and CORRELATION_INPUT in self.inputs:
                raise ValueError(
                    f"inputs must not contain the key {CORRELATION_INPUT!r}: the operator sets it to find "
                    "its execution again on retry (or pass reattach_on_retry=False)"
                )
        if (
            known(self.correlation_id)
            and self.correlation_id is not None
            and (not isinstance(self.correlation_id, str) or not self.correlation_id.strip())
        ):
            raise ValueError(
                f"correlation_id must be a non-empty string or None, got {self.correlation_id!r}"
            )
        if known(self.tags) and self.tags is not None:
            check_tags(self.tags)

    def execute(self, context: Context) -> dict[str, Any]:
        with task_arguments():
            self._check_arguments(skip_templates=False)
        identity = task_instance_identity(context)
        with self.hook.get_client() as client, task_errors():
            earlier = self._find_own_execution(context, client, identity) if self.reattach_on_retry else None
            if earlier is not None:
                # Linked before the resume: a resume that fails still leaves the link to the execution.
                publish_execution_id(self, context, earlier.execution_id)
            execution_id = self._continue(context, client, earlier) if earlier is not None else None
            if execution_id is None:
                execution_id = self._start(context, client, identity)
            self._own_execution_id = execution_id
            publish_execution_id(self, context, execution_id)
            if not self.wait_for_completion:
                execution = client.get_execution_status(execution_id)
                return execution.to_xcom(include_outputs=self.include_outputs)
            try:
                return self._wait(client, execution_id, stop_on_kill=self.stop_on_kill)
            except ExecutionWaitTimeout:
                if self.stop_on_kill:
                    self._stop_own_execution(execution_id)
                raise

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Called when the trigger fires; at the deadline the execution this task started is stopped
        first (``stop_on_kill``, HTTP API)."""
        try:
            timed_out = ExecutionTriggerEvent.from_payload(event).status is EventStatus.TIMEOUT
        except (TypeError, ValueError):
            timed_out = False
        if timed_out and self.stop_on_kill and event is not None:
            self._stop_own_execution(event["execution_id"])
        return super().execute_complete(context, event)

    def _continue(
        self, context: Context, client: SyncExecutionClient, earlier: ExecutionStatus
    ) -> str | None:
        """The id of the earlier try's execution to wait on now, resumed if it failed (or its rerun,
        with ``on_not_resumed="rerun"``); None to start a new one (``on_retry="restart"`` and it ended)."""
        execution_id, state = earlier.execution_id, earlier.status
        if not state.is_terminal:
            self.log.info(
                "Re-attaching to execution %s (%s) started by an earlier try", execution_id, state.name
            )
            return execution_id
        if self.on_retry == "restart":
            self.log.info(
                "Execution %s of an earlier try is %s: starting a new one (on_retry='restart')",
                execution_id,
                state.name,
            )
            return None
        if state is ExecutionState.COMPLETED:
            self.log.info(
                "Execution %s of an earlier try already COMPLETED: nothing runs again", execution_id
            )
            return execution_id
        self.log.info(
            "Execution %s of an earlier try FAILED: resuming it (on_retry='resume'); its completed steps "
            "are not run again",
            execution_id,
        )
        outcome = resume_checked(
            client,
            execution_id,
            skip_completed_steps=True,
            grace=self.resume_check_grace,
            log=self.log,
            on_not_resumed=self.on_not_resumed,
        )
        if outcome.rerun is None:
            return execution_id
        rerun_execution_id = outcome.rerun.rerun_execution_id
        context["ti"].xcom_push(key="rerun_of", value=execution_id)
        store = context.get("task_state_store")
        if store is not None:
            store.set(STATE_STORE_KEY, rerun_execution_id)
        return rerun_execution_id

    def _start(self, context: Context, client: SyncExecutionClient, identity: str) -> str:
        from cerebelum_provider.client import CoreAPI

        inputs = dict(self.inputs or {})
        if self.reattach_on_retry:
            inputs[CORRELATION_INPUT] = identity
        options: dict[str, Any] = {
            "correlation_id": self.correlation_id or identity,
            "tags": list(self.tags) if self.tags else None,
        }
        if client.api is CoreAPI.HTTP:
            # The connection, not the DAG, picks the API: the same DAG runs over both, and what REST
            # cannot carry is named in the log rather than failing the task.
            unsent = [name for name in ("correlation_id", "tags") if getattr(self, name)]
            if unsent:
                self.log.warning(
                    "%s not sent: Core's HTTP API (connection %r) starts a workflow from its name and "
                    "inputs only; put them into inputs, or use a gRPC connection",
                    " and ".join(unsent),
                    self.cerebelum_conn_id,
                )
            options = {}
        handle = client.execute_workflow(self.workflow_name, inputs, **options)  # final errors: see execute
        self.log.info("Started Cerebelum workflow %r: execution %s", self.workflow_name, handle.execution_id)
        store = context.get("task_state_store")
        if self.reattach_on_retry and store is not None:
            store.set(STATE_STORE_KEY, handle.execution_id)
        return handle.execution_id

    def _find_own_execution(
        self, context: Context, client: SyncExecutionClient, identity: str
    ) -> ExecutionStatus | None:
        """The execution an earlier try of this task instance started, as Core reports it now; None
        when there is none (or Core no longer knows it)."""
        from cerebelum_provider.exceptions import ExecutionNotFoundError

        store = context.get("task_state_store")
        stored_id = store.get(STATE_STORE_KEY) if store is not None else None
        if isinstance(stored_id, str) and stored_id:
            try:
                return client.get_execution_status(stored_id)
            except ExecutionNotFoundError:
                self.log.info(
                    "Execution %s of an earlier try is unknown to Core: starting a new one", stored_id
                )
                return None
        if context["ti"].try_number <= 1:
            return None
        for execution in self._executions_with_identity(client, identity):
            self.log.info(
                "Found execution %s (%s) of an earlier try in Core by its correlation id",
                execution.execution_id,
                execution.status.name,
            )
            return execution
        return None

    def _executions_with_identity(
        self, client: SyncExecutionClient, identity: str
    ) -> Iterator[ExecutionStatus]:
        """Executions of the workflow whose correlation input is ``identity``: the alive ones first,
        then (when a retry resumes) the failed and completed ones.

        Over gRPC a listed execution carries its inputs. Core's REST list has no inputs: each
        listed execution's inputs are read from its start event instead, and its status read.
        """
        from cerebelum_provider.client import CoreAPI
        from cerebelum_provider.client._rerun import start_event_inputs

        states: tuple[ExecutionState, ...] = _ALIVE_STATES
        if self.on_retry == "resume":
            states = (*_ALIVE_STATES, ExecutionState.FAILED, ExecutionState.COMPLETED)
        over_http = client.api is CoreAPI.HTTP
        for state in states:
            for execution in client.iter_executions(workflow_name=self.workflow_name, status=state):
                if not over_http:
                    if execution.inputs.get(CORRELATION_INPUT) == identity:
                        yield execution
                    continue
                events = client.get_execution_events(execution.execution_id)
                if (start_event_inputs(events) or {}).get(CORRELATION_INPUT) == identity:
                    yield client.get_execution_status(execution.execution_id)

    def on_kill(self) -> None:
        """Stop the execution this task started, when ``stop_on_kill`` (HTTP API only)."""
        if self.stop_on_kill and self._own_execution_id is not None:
            self._stop_own_execution(self._own_execution_id)

    def _stop_own_execution(self, execution_id: str) -> None:
        # The hook's one stop for a killed task, run on a loop of its own: this task has none.
        import asyncio

        asyncio.run(self.hook.astop_own_execution(execution_id, self.log))

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """OpenLineage: Core as namespace, the workflow as job, the execution started (see ``_lineage``)."""
        from cerebelum_provider._lineage import single_execution_lineage

        return single_execution_lineage(self.hook, task_instance, workflow_name=self.workflow_name)


class CerebelumApproveExecutionOperator(_CerebelumWaitingOperator):
    """Approve the step a Cerebelum execution waits on, with a response, and optionally wait for it.

    Core hands ``response`` (a JSON-like dict) to the step that asked for approval, as its
    inputs, and runs it again. Put this operator behind Airflow's own human-in-the-loop task
    (``airflow.providers.standard.operators.hitl.ApprovalOperator``) to let a person decide in
    Airflow's UI. Approval exists only in Core's HTTP API: over a gRPC connection the task fails
    at once, naming the connection. An execution that waits for no approval (yet) makes Core
    refuse (HTTP 422): the task fails, and Airflow's retries may try again later.

    Returns (XCom):
        ``{"execution_id", "approval_status": "approved"}``, plus ``"execution"`` (the final
        execution dict) when ``wait_for_completion`` is set.
    """

    template_fields: Sequence[str] = ("execution_id", "response", "cerebelum_conn_id")
    template_fields_renderers: ClassVar[dict[str, str]] = {"response": "json"}

    def __init__(
        self,
        *,
        execution_id: str,
        response: dict[str, Any] | None = None,
        cerebelum_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool = False,
        deferrable: bool | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            cerebelum_conn_id=cerebelum_conn_id,
            wait_for_completion=wait_for_completion,
            deferrable=deferrable,
            poll_interval=poll_interval,
            timeout=timeout,
            **kwargs,
        )
        if not is_template_value(response) and not is_jinja(response):
            check_response(response)
        self.execution_id = check_execution_id_argument(execution_id)
        self.response = response

    def execute(self, context: Context) -> dict[str, Any]:
        with task_arguments():
            execution_id = check_execution_id(self.execution_id)
            response = check_response(self.response)
        publish_execution_id(self, context, execution_id)
        with self.hook.get_client() as client, task_errors():
            answer = client.approve_execution(execution_id, response)
            self.log.info("Cerebelum execution %s: %s", execution_id, answer)
            result: dict[str, Any] = {"execution_id": execution_id, "approval_status": answer}
            if not self.wait_for_completion:
                return result
            result["execution"] = self._wait(client, execution_id)
            return result

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Called when the trigger fires: ``{"execution_id", "approval_status", "execution"}``."""
        execution = super().execute_complete(context, event)
        return {
            "execution_id": execution.get("execution_id"),
            "approval_status": "approved",
            "execution": execution,
        }


def check_response(response: object, field_name: str = "response") -> dict[str, Any]:
    """The approval response as a dict (None means ``{}``); TypeError/ValueError naming what is wrong."""
    if response is None:
        return {}
    if not isinstance(response, dict):
        raise TypeError(f"{field_name} must be a dict or None, got {type(response).__name__} {response!r}")
    if "id" in response:
        raise ValueError(
            f"{field_name} must not contain the key 'id': Core's HTTP API replaces it with the execution id"
        )
    return response


def task_instance_identity(context: Context) -> str:
    """``"airflow:{dag_id}:{run_id}:{task_id}:{map_index}"`` for the running task instance."""
    ti = context["ti"]
    map_index = ti.map_index if ti.map_index is not None else -1
    return f"airflow:{ti.dag_id}:{ti.run_id}:{ti.task_id}:{map_index}"
