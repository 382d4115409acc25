"""Operators that act on Cerebelum executions: resume one, resume many, start a workflow, approve.

Each operator holds ids and options and asks ``CerebelumHook`` for a client; the hook is the only
place that reads the connection, so the token never reaches an operator attribute, a rendered
field, XCom or a log line. grpc, protobuf and tenacity are imported inside ``execute`` only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from cerebelum_provider._arguments import check_bool, check_execution_id, is_template_value
from cerebelum_provider.bulk import (
    CHECKED_ANSWERS,
    DEFAULT_RESUME_CHECK_GRACE,
    check_resume_check_grace,
    coerce_states,
    not_resumed_message,
    validate_request,
)
from cerebelum_provider.exceptions import CerebelumAuthError, CerebelumTLSError
from cerebelum_provider.links.cerebelum import CerebelumExecutionLink, publish_execution_id
from cerebelum_provider.models import ExecutionState
from cerebelum_provider.operators._common import (
    call_with_retries,
    check_seconds,
    finish,
    handle_trigger_event,
    trigger_end_time,
    wait_in_worker,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from cerebelum_provider.hooks.cerebelum import CerebelumHook

DEFAULT_CONN_ID = "cerebelum_default"
DEFAULT_POLL_INTERVAL = 30.0
#: Input field that ties an execution to the Airflow task instance that started it.
CORRELATION_INPUT = "_airflow_correlation_id"
#: task_state_store key under which the execute operator keeps the id of the execution it started.
STATE_STORE_KEY = "cerebelum_execution_id"
_ALIVE_STATES = (
    ExecutionState.RUNNING,
    ExecutionState.SLEEPING,
    ExecutionState.WAITING_FOR_APPROVAL,
    ExecutionState.PAUSED,
)


def _default_deferrable() -> bool:
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def _check_conn_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"cerebelum_conn_id must be a non-empty string, got {value!r}")
    return value


class _CerebelumOperatorBase(BaseOperator):
    """Connection, waiting options and the wait itself, shared by the single-execution operators."""

    ui_color = "#d9ecff"
    operator_extra_links = (CerebelumExecutionLink(),)

    def __init__(
        self,
        *,
        cerebelum_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool,
        deferrable: bool,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cerebelum_conn_id = _check_conn_id(cerebelum_conn_id)
        self.wait_for_completion = check_bool(wait_for_completion, field_name="wait_for_completion")
        self.deferrable = check_bool(deferrable, field_name="deferrable")
        self.poll_interval = check_seconds(poll_interval, field_name="poll_interval")
        self.timeout = check_seconds(timeout, field_name="timeout", allow_none=True)

    @property
    def hook(self) -> CerebelumHook:
        from cerebelum_provider.hooks.cerebelum import CerebelumHook

        return CerebelumHook(cerebelum_conn_id=self.cerebelum_conn_id)

    def _wait(self, client: Any, execution_id: str, *, stop_on_kill: bool = False) -> dict[str, Any]:
        """Wait for the execution: in the worker, or by deferring to the trigger after one check.

        ``stop_on_kill`` hands the trigger the duty to stop the execution when a user kills the
        deferred task (only for an execution this task started).
        """
        if not self.deferrable:
            return wait_in_worker(
                client, execution_id, poll_interval=self.poll_interval, timeout=self.timeout, log=self.log
            )
        execution = call_with_retries(lambda: client.get_execution_status(execution_id))
        self.log.info("%s", execution.describe_progress())
        if execution.status.is_terminal:
            return finish(execution)
        from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger

        self.defer(
            trigger=CerebelumExecutionTrigger(
                execution_id=execution_id,
                cerebelum_conn_id=self.cerebelum_conn_id,
                poll_interval=self.poll_interval,
                success_states=(ExecutionState.COMPLETED.name,),
                failure_states=(ExecutionState.FAILED.name,),
                end_time=trigger_end_time(self.timeout),
                stop_on_kill=stop_on_kill,
            ),
            method_name="execute_complete",
        )
        raise AssertionError("unreachable: defer() raises TaskDeferred")

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Called when the trigger fires: the final execution dict, or the task fails with the reason."""
        result = handle_trigger_event(event, timeout=self.timeout)
        self.log.info("Cerebelum execution %s finished: %s", result.get("execution_id"), result.get("status"))
        return result


class CerebelumResumeExecutionOperator(_CerebelumOperatorBase):
    """Resume one execution (typically a FAILED one) and optionally wait for it to finish.

    ``"failed_to_resume"`` (unknown id, completed execution, any other refusal) fails the task.
    ``"resumed"`` and ``"already_running"`` are checked, never assumed: ``resume_check_grace``
    seconds later (0: at once) the execution is read back, and one still FAILED fails the task with
    Core's answer and error (the released Core answers "already_running" for a FAILED execution
    until it restarts, and "resumed" after a restart, and runs nothing again either way). An
    execution that really resumed but failed again within the grace reads the same, and fails the
    task the same way. A check that cannot be read fails the task with the reason. Transient errors
    are retried (resuming twice is safe: the second call answers ``"already_running"``).

    Returns (XCom):
        ``{"execution_id", "resume_status"}``, plus ``"execution"`` (the final execution dict)
        when ``wait_for_completion`` is set.
    """

    template_fields: Sequence[str] = ("execution_id",)

    def __init__(
        self,
        *,
        execution_id: str,
        cerebelum_conn_id: str = DEFAULT_CONN_ID,
        skip_completed_steps: bool = True,
        wait_for_completion: bool = False,
        deferrable: bool | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = None,
        resume_check_grace: float = DEFAULT_RESUME_CHECK_GRACE,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            cerebelum_conn_id=cerebelum_conn_id,
            wait_for_completion=wait_for_completion,
            deferrable=_default_deferrable() if deferrable is None else deferrable,
            poll_interval=poll_interval,
            timeout=timeout,
            **kwargs,
        )
        if not is_template_value(execution_id):
            check_execution_id(execution_id)
        self.execution_id = execution_id
        self.skip_completed_steps = check_bool(skip_completed_steps, field_name="skip_completed_steps")
        self.resume_check_grace = check_resume_check_grace(resume_check_grace)

    def execute(self, context: Context) -> dict[str, Any]:
        execution_id = check_execution_id(self.execution_id)
        publish_execution_id(context, execution_id)
        with self.hook.get_client() as client:
            try:
                answer = call_with_retries(
                    lambda: client.resume_execution(
                        execution_id, skip_completed_steps=self.skip_completed_steps
                    )
                )
            except (CerebelumAuthError, CerebelumTLSError) as error:
                raise AirflowFailException(error.message) from None
            if answer == "failed_to_resume":
                raise AirflowException(
                    f"Cerebelum Core at {client.address} refused to resume execution {execution_id} "
                    "(failed_to_resume: it is unknown, already completed, or cannot be rebuilt)"
                )
            if answer not in CHECKED_ANSWERS:
                raise AirflowException(f"Cerebelum Core answered an unknown resume status {answer!r}")
            self.log.info("Cerebelum execution %s: %s", execution_id, answer)
            self._check_resumed(client, execution_id, answer)
            result: dict[str, Any] = {"execution_id": execution_id, "resume_status": answer}
            if not self.wait_for_completion:
                return result
            # Kept in XCom (which survives deferral) for execute_complete: dag.test() does not
            # hand defer()'s kwargs back with the event, the triggerer does.
            context["ti"].xcom_push(key="resume_status", value=answer)
            result["execution"] = self._wait(client, execution_id)
            return result

    def _check_resumed(self, client: Any, execution_id: str, answer: str) -> None:
        """Read the execution back after the grace; raise when it is still FAILED or cannot be read."""
        from cerebelum_provider.exceptions import CerebelumError

        if self.resume_check_grace > 0:
            time.sleep(self.resume_check_grace)
        try:
            execution = call_with_retries(lambda: client.get_execution_status(execution_id))
        except (CerebelumAuthError, CerebelumTLSError) as error:
            raise AirflowFailException(error.message) from None
        except CerebelumError as error:
            raise AirflowException(
                f"Cerebelum Core answered {answer!r} for execution {execution_id}, but reading it back "
                f"to check that it left FAILED failed: {error.message}"
            ) from None
        if execution.status is ExecutionState.FAILED:
            raise AirflowException(
                not_resumed_message(execution_id, answer, self.resume_check_grace, execution.error)
            )
        self.log.info("Cerebelum execution %s is %s after the resume", execution_id, execution.status.name)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Called when the trigger fires: ``{"execution_id", "resume_status", "execution"}``."""
        execution = super().execute_complete(context, event)
        return {
            "execution_id": execution.get("execution_id"),
            "resume_status": context["ti"].xcom_pull(task_ids=self.task_id, key="resume_status"),
            "execution": execution,
        }


class CerebelumBulkResumeOperator(BaseOperator):
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

    ``workflow_name`` and ``dry_run`` are templated; ``.expand(workflow_name=[...])`` splits one
    bulk resume over mapped task instances.

    Returns (XCom):
        The summary: ``matched``, the id lists ``resumed``, ``already_running``,
        ``failed_to_resume``, ``not_resumed`` and ``would_resume`` (dry run), ``errors`` by id, and
        ``dry_run``.
        When the task fails on errors, the same summary is pushed under the key ``"summary"``.
    """

    template_fields: Sequence[str] = ("workflow_name", "dry_run")
    ui_color = "#d9ecff"
    operator_extra_links = (CerebelumExecutionLink(),)
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
        dry_run: bool = False,
        fail_on_error: bool = True,
        cerebelum_conn_id: str = DEFAULT_CONN_ID,
        resume_check_grace: float = DEFAULT_RESUME_CHECK_GRACE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.workflow_name = workflow_name
        # States are kept as names: plain strings serialize with the DAG.
        self.states = [state.name for state in coerce_states(states)]
        self.max_executions = max_executions
        self.max_concurrency = max_concurrency
        self.skip_completed_steps = skip_completed_steps
        self.dry_run = dry_run
        self.fail_on_error = check_bool(fail_on_error, field_name="fail_on_error")
        self.cerebelum_conn_id = _check_conn_id(cerebelum_conn_id)
        self.resume_check_grace = check_resume_check_grace(resume_check_grace)
        # Templated values ("{{ params.dry_run }}", an XComArg) are checked again once rendered.
        self._validate(
            workflow_name=None if is_template_value(workflow_name) else workflow_name,
            dry_run=False if is_template_value(dry_run) or _is_jinja(dry_run) else dry_run,
        )

    def _validate(self, *, workflow_name: object, dry_run: object) -> None:
        validate_request(
            workflow_name=workflow_name,
            states=self.states,
            max_executions=self.max_executions,
            max_concurrency=self.max_concurrency,
            skip_completed_steps=self.skip_completed_steps,
            dry_run=dry_run,
            resume_check_grace=self.resume_check_grace,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        import asyncio

        self._validate(workflow_name=self.workflow_name, dry_run=self.dry_run)
        which = f"workflow {self.workflow_name!r}" if self.workflow_name else "every workflow"
        self.log.info(
            "Bulk resume of %s in states %s (max_concurrency=%d%s%s)",
            which,
            ", ".join(self.states),
            self.max_concurrency,
            f", max_executions={self.max_executions}" if self.max_executions else "",
            ", dry run" if self.dry_run else "",
        )
        try:
            summary = asyncio.run(self._resume_all())
        except (CerebelumAuthError, CerebelumTLSError) as error:
            raise AirflowFailException(error.message) from None
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
        result = summary.to_dict()
        if self.fail_on_error and summary.failed:
            context["ti"].xcom_push(key="summary", value=result)
            raise AirflowException(
                f"Bulk resume of {which} did not resume everything: {summary.describe()} "
                "(the full summary is in XCom under the key 'summary')"
            )
        return result

    async def _resume_all(self):
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
            dry_run=self.dry_run,
            on_progress=self._progress_logger(),
            resume_check_grace=self.resume_check_grace,
        )

    def _progress_logger(self):
        last_logged = time.monotonic()

        def log_progress(counts: dict[str, int]) -> None:
            nonlocal last_logged
            now = time.monotonic()
            if now - last_logged >= self.progress_log_interval:
                last_logged = now
                self.log.info("Bulk resume progress: %s", ", ".join(f"{k}={v}" for k, v in counts.items()))

        return log_progress

    @property
    def hook(self) -> CerebelumHook:
        from cerebelum_provider.hooks.cerebelum import CerebelumHook

        return CerebelumHook(cerebelum_conn_id=self.cerebelum_conn_id)


class CerebelumExecuteWorkflowOperator(_CerebelumOperatorBase):
    """Start a workflow on Core and, by default, wait for the execution to finish.

    The new execution's id is pushed to XCom (key ``"execution_id"``) before waiting. Core
    ignores client-chosen ids, so a retried start would run the workflow twice; instead, on an
    Airflow retry (or a re-run) of the same task instance the operator re-attaches to the
    execution it started when that one is still alive (running, sleeping, waiting for approval
    or paused). It finds it in two places, in this order:

    1. Airflow's ``task_state_store`` (Airflow 3.3+), where the id is written right after the
       start; it survives retries, while XCom is cleared at the start of each try.
    2. Core itself, when the id never reached the store (the worker died, or Core's answer to
       the start was lost): the alive executions of the workflow are listed and the one whose
       input ``_airflow_correlation_id`` names this task instance is taken.

    An execution that already COMPLETED or FAILED is not re-attached to: the retry starts a new
    one. ``reattach_on_retry=False`` turns both off and leaves the inputs untouched.

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

    template_fields: Sequence[str] = ("workflow_name", "inputs", "correlation_id", "tags")
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
        timeout: float | None = None,
        reattach_on_retry: bool = True,
        stop_on_kill: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            cerebelum_conn_id=cerebelum_conn_id,
            wait_for_completion=wait_for_completion,
            deferrable=_default_deferrable() if deferrable is None else deferrable,
            poll_interval=poll_interval,
            timeout=timeout,
            **kwargs,
        )
        self.workflow_name = workflow_name
        self.inputs = inputs
        self.correlation_id = correlation_id
        self.tags = tags
        self.reattach_on_retry = check_bool(reattach_on_retry, field_name="reattach_on_retry")
        self.stop_on_kill = check_bool(stop_on_kill, field_name="stop_on_kill")
        #: The execution this task instance started or re-attached to, for on_kill.
        self._own_execution_id: str | None = None
        self._check_arguments(skip_templates=True)

    def _check_arguments(self, *, skip_templates: bool) -> None:
        def known(value: object) -> bool:
            return not (skip_templates and (is_template_value(value) or _is_jinja(value)))

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
            if isinstance(self.tags, str) or not isinstance(self.tags, (list, tuple)):
                raise TypeError(f"tags must be a list of strings or None, got {self.tags!r}")
            bad = [tag for tag in self.tags if not isinstance(tag, str) or not tag]
            if bad:
                raise ValueError(f"tags must be non-empty strings, got {bad!r}")

    def execute(self, context: Context) -> dict[str, Any]:
        self._check_arguments(skip_templates=False)
        identity = task_instance_identity(context)
        with self.hook.get_client() as client:
            execution_id = (
                self._find_own_execution(context, client, identity) if self.reattach_on_retry else None
            )
            if execution_id is None:
                execution_id = self._start(context, client, identity)
            self._own_execution_id = execution_id
            publish_execution_id(context, execution_id)
            if self.wait_for_completion:
                return self._wait(client, execution_id, stop_on_kill=self.stop_on_kill)
            return call_with_retries(lambda: client.get_execution_status(execution_id)).to_dict()

    def _start(self, context: Context, client: Any, identity: str) -> str:
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
        try:
            handle = client.execute_workflow(self.workflow_name, inputs, **options)
        except (CerebelumAuthError, CerebelumTLSError) as error:
            raise AirflowFailException(error.message) from None
        self.log.info("Started Cerebelum workflow %r: execution %s", self.workflow_name, handle.execution_id)
        store = context.get("task_state_store")
        if self.reattach_on_retry and store is not None:
            store.set(STATE_STORE_KEY, handle.execution_id)
        return handle.execution_id

    def _find_own_execution(self, context: Context, client: Any, identity: str) -> str | None:
        """The alive execution an earlier try of this task instance started, or None."""
        from cerebelum_provider.exceptions import ExecutionNotFoundError

        store = context.get("task_state_store")
        stored_id = store.get(STATE_STORE_KEY) if store is not None else None
        if stored_id:
            try:
                execution = call_with_retries(lambda: client.get_execution_status(stored_id))
            except ExecutionNotFoundError:
                execution = None
            if execution is not None and not execution.status.is_terminal:
                self.log.info("Re-attaching to execution %s started by an earlier try", stored_id)
                return stored_id
            state = execution.status.name if execution is not None else "unknown to Core"
            self.log.info("Execution %s of an earlier try is %s: starting a new one", stored_id, state)
            return None
        if context["ti"].try_number <= 1:
            return None
        for execution_id, state in self._alive_executions_with_identity(client, identity):
            self.log.info(
                "Re-attaching to execution %s (%s), found in Core by its correlation id", execution_id, state
            )
            return execution_id
        return None

    def _alive_executions_with_identity(self, client: Any, identity: str) -> Iterator[tuple[str, str]]:
        """``(execution_id, state name)`` of alive executions of the workflow whose correlation input
        is ``identity``.

        Over gRPC a listed execution carries its inputs. Core's REST list has no inputs: each alive
        execution's inputs are read from its start event instead.
        """
        from cerebelum_provider.client import CoreAPI

        over_http = client.api is CoreAPI.HTTP
        for state in _ALIVE_STATES:
            for execution in client.iter_executions(workflow_name=self.workflow_name, status=state):
                if over_http:
                    events = call_with_retries(lambda: client.get_execution_events(execution.execution_id))
                    found = _started_with_identity(events, identity)
                else:
                    found = execution.inputs.get(CORRELATION_INPUT) == identity
                if found:
                    yield execution.execution_id, state.name

    def on_kill(self) -> None:
        """Stop the execution this task started, when ``stop_on_kill`` (HTTP API only)."""
        if self.stop_on_kill and self._own_execution_id is not None:
            stop_own_execution(self.hook, self._own_execution_id, self.log)


class CerebelumApproveExecutionOperator(_CerebelumOperatorBase):
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

    template_fields: Sequence[str] = ("execution_id", "response")
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
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            cerebelum_conn_id=cerebelum_conn_id,
            wait_for_completion=wait_for_completion,
            deferrable=_default_deferrable() if deferrable is None else deferrable,
            poll_interval=poll_interval,
            timeout=timeout,
            **kwargs,
        )
        if not is_template_value(execution_id):
            check_execution_id(execution_id)
        if not is_template_value(response) and not _is_jinja(response):
            _check_response(response)
        self.execution_id = execution_id
        self.response = response

    def execute(self, context: Context) -> dict[str, Any]:
        from cerebelum_provider.exceptions import UnsupportedOperationError

        execution_id = check_execution_id(self.execution_id)
        response = _check_response(self.response)
        publish_execution_id(context, execution_id)
        with self.hook.get_client() as client:
            try:
                answer = client.approve_execution(execution_id, response)
            except (CerebelumAuthError, CerebelumTLSError, UnsupportedOperationError) as error:
                raise AirflowFailException(error.message) from None
            self.log.info("Cerebelum execution %s: %s", execution_id, answer)
            result: dict[str, Any] = {"execution_id": execution_id, "approval_status": answer}
            if not self.wait_for_completion:
                return result
            result["execution"] = self._wait(client, execution_id)
            return result

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Called when the trigger fires: ``{"execution_id", "approval_status", "execution"}``."""
        execution = super().execute_complete(context, event)
        return {"execution_id": execution.get("execution_id"), "approval_status": "approved", "execution": execution}


def _check_response(response: object) -> dict[str, Any]:
    """The approval response as a dict (None means ``{}``); TypeError/ValueError naming what is wrong."""
    if response is None:
        return {}
    if not isinstance(response, dict):
        raise TypeError(f"response must be a dict or None, got {type(response).__name__} {response!r}")
    if "id" in response:
        raise ValueError("response must not contain the key 'id': Core's HTTP API replaces it with the execution id")
    return response


def stop_own_execution(hook: CerebelumHook, execution_id: str, log: Any) -> None:
    """Stop an execution a killed task started; over gRPC (no stop call) warn that it runs on.

    Never raises: a kill must not fail because Core could not be told.
    """
    from cerebelum_provider.client import CoreAPI
    from cerebelum_provider.exceptions import CerebelumError

    try:
        client = hook.get_client()
    except ValueError as error:
        log.warning("Could not stop Cerebelum execution %s: %s", execution_id, error)
        return
    with client:
        if client.api is not CoreAPI.HTTP:
            log.warning(
                "Cerebelum execution %s is left running: stopping an execution needs Core's HTTP API "
                "(api=http on connection %r)",
                execution_id,
                hook.cerebelum_conn_id,
            )
            return
        try:
            client.stop_execution(execution_id)
        except CerebelumError as error:
            log.warning("Could not stop Cerebelum execution %s: %s", execution_id, error)
            return
    log.info("Stopped Cerebelum execution %s, which this task started", execution_id)


def _started_with_identity(events: list[dict[str, Any]], identity: str) -> bool:
    for event in events:
        if event.get("type") == "ExecutionStartedEvent":
            data = event.get("data") if isinstance(event.get("data"), dict) else {}
            inputs = data.get("inputs") if isinstance(data.get("inputs"), dict) else {}
            return inputs.get(CORRELATION_INPUT) == identity
    return False


def task_instance_identity(context: Context) -> str:
    """``"airflow:{dag_id}:{run_id}:{task_id}:{map_index}"`` for the running task instance."""
    ti = context["ti"]
    map_index = ti.map_index if ti.map_index is not None else -1
    return f"airflow:{ti.dag_id}:{ti.run_id}:{ti.task_id}:{map_index}"


def _is_jinja(value: object) -> bool:
    return isinstance(value, str) and "{{" in value
