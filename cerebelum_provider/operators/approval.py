"""``CerebelumApprovalOperator``: a person approves (or rejects) a Cerebelum execution, in one task.

The task waits, deferred, until the execution asks for approval; shows the person Core's request
in Airflow's "Required actions" page (human-in-the-loop, ``HITLOperator`` of the standard
provider); on "Approve" approves in Core with what the person typed as the step's inputs, on
"Reject" stops the execution in Core and fails; then, optionally, waits (deferred) for it to finish.
Approval and stop exist only in Core's HTTP API.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from cerebelum_provider._arguments import DEFAULT_CONN_ID, check_execution_id, check_execution_id_argument
from cerebelum_provider._outage import DEFAULT_UNAVAILABLE_TIMEOUT
from cerebelum_provider._outcome import task_arguments, task_errors, task_outcome
from cerebelum_provider.links.cerebelum import publish_execution_id, remember_execution_id
from cerebelum_provider.models import ApprovalInfo, ExecutionState
from cerebelum_provider.operators._common import DEFAULT_WAIT_TIMEOUT, ExecutionWaitTimeout
from cerebelum_provider.operators.cerebelum import (
    DEFAULT_POLL_INTERVAL,
    _CerebelumWaitingOperator,
    check_response,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

#: XCom key under which the decision waits for the end of the execution (XCom survives deferral).
DECISION_XCOM_KEY = "cerebelum_approval"


class CerebelumApprovalOperator(_CerebelumWaitingOperator, HITLOperator):
    """Let a person approve or reject the step a Cerebelum execution waits on, in one task.

    1. Waits, deferred, until the execution asks for approval (at most ``timeout`` seconds). An
       execution that fails, or completes, without asking fails the task (no retry: it will not ask).
    2. Shows the request in the "Required actions" page: ``subject`` and ``body`` (built from
       Core's request when not given: the step, what it asks, its timeout), the options "Approve"
       and "Reject", and ``params`` as the form the person fills in. The person has
       ``response_timeout`` to answer; by default, the time Core's request has left. Nobody
       answering in time fails the task and leaves the execution waiting in Core.
    3. "Approve": approves in Core with the form's values (``params_input``) as the response, which
       Core hands to the waiting step as its inputs. "Reject": stops the execution in Core (it
       runs nothing more, and can no longer be approved or resumed) and fails the task, naming who
       rejected it, without Airflow's retries.
    4. With ``wait_for_completion`` (the default), waits deferred until the execution finishes;
       one that fails then fails the task with Core's error.

    Needs Core's HTTP API (``api=http`` on the connection): over gRPC the task fails at once,
    before anything is sent. For approvals without a person, use
    ``CerebelumApproveExecutionOperator``.

    Returns (XCom):
        ``{"execution_id", "step", "approval_status": "approved", "response", "responded_by"}``,
        plus ``"execution"`` (the final execution dict) when ``wait_for_completion`` is set.
    """

    APPROVE: ClassVar[str] = "Approve"
    REJECT: ClassVar[str] = "Reject"

    template_fields: Sequence[str] = ("execution_id", "cerebelum_conn_id", "subject", "body")

    def __init__(
        self,
        *,
        execution_id: str,
        cerebelum_conn_id: str = DEFAULT_CONN_ID,
        subject: str | None = None,
        body: str | None = None,
        params: dict[str, Any] | None = None,
        response_timeout: timedelta | None = None,
        wait_for_completion: bool = True,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        include_outputs: bool = False,
        unavailable_timeout: float | None = DEFAULT_UNAVAILABLE_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        for fixed in ("options", "multiple"):
            if fixed in kwargs:
                raise ValueError(
                    f"{fixed} cannot be given to CerebelumApprovalOperator: its options are "
                    f"{self.APPROVE!r} and {self.REJECT!r}, one at a time"
                )
        check_response(dict.fromkeys(params or {}), field_name="params")
        super().__init__(
            cerebelum_conn_id=cerebelum_conn_id,
            wait_for_completion=wait_for_completion,
            deferrable=True,
            poll_interval=poll_interval,
            timeout=timeout,
            include_outputs=include_outputs,
            unavailable_timeout=unavailable_timeout,
            subject=subject or "",
            body=body,
            options=[self.APPROVE, self.REJECT],
            multiple=False,
            params=params,
            response_timeout=response_timeout,
            **kwargs,
        )
        self.execution_id = check_execution_id_argument(execution_id)

    # 1. Wait until the execution asks ------------------------------------------------------

    def execute(self, context: Context) -> Any:
        from cerebelum_provider.client import CoreAPI

        with task_arguments():
            execution_id = check_execution_id(self.execution_id)
        with self.hook.get_client() as client:
            if client.api is not CoreAPI.HTTP:
                raise AirflowFailException(
                    f"CerebelumApprovalOperator needs Core's HTTP API, where approval and stop exist: "
                    f"set api=http on connection {self.cerebelum_conn_id!r} (it uses {client.api.value}); "
                    "nothing was sent"
                )
            publish_execution_id(self, context, execution_id)
            with task_errors():
                execution = client.get_execution_status(execution_id)
        self.log.info("%s", execution.describe_progress())
        if execution.status is ExecutionState.WAITING_FOR_APPROVAL:
            return self._ask(context, execution_id)
        if execution.status is ExecutionState.FAILED:
            raise AirflowFailException(f"{execution.failure_message()}; it failed before asking for approval")
        if execution.status is ExecutionState.COMPLETED:
            raise AirflowFailException(_completed_without_asking(execution_id))
        self._defer_until(
            execution_id,
            success_states=(ExecutionState.WAITING_FOR_APPROVAL, ExecutionState.COMPLETED),
            failure_states=(ExecutionState.FAILED,),
            method_name="on_approval_asked",
        )
        return None  # not reached: defer() raises TaskDeferred

    def on_approval_asked(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """The trigger saw the execution ask (or end): put the request in front of a person."""
        remember_execution_id(self, event)
        # A failed execution fails the task for good: it will not ask for approval any more.
        execution = task_outcome(event, failure_is_final=True, timeout_error=ExecutionWaitTimeout)
        execution_id = check_execution_id(self.execution_id)
        if execution.get("status") == ExecutionState.COMPLETED.value:
            raise AirflowFailException(_completed_without_asking(execution_id))
        return self._ask(context, execution_id)

    # 2. Ask the person ---------------------------------------------------------------------

    def _ask(self, context: Context, execution_id: str) -> Any:
        from cerebelum_provider.client._rest_convert import approval_from_events

        with self.hook.get_client() as client, task_errors():
            asked = approval_from_events(client.get_execution_events(execution_id))
        step, request = asked if asked is not None else ("", None)
        self.log.info(
            "Cerebelum execution %s asks for approval at step %r: %s",
            execution_id,
            step,
            request.to_dict() if request is not None else "(Core gave no request)",
        )
        if not self.subject:
            at = f" at step {step}" if step else ""
            self.subject = f"Approve Cerebelum execution {execution_id}{at}?"
        self.body = _describe_request(execution_id, step, request, self.body)
        if self.response_timeout is None and request is not None and request.remaining_timeout_ms > 0:
            # The person gets the time Core's request has left: after that Core would refuse.
            self.response_timeout = timedelta(milliseconds=request.remaining_timeout_ms)
        context["ti"].xcom_push(key=DECISION_XCOM_KEY, value={"execution_id": execution_id, "step": step})
        return HITLOperator.execute(self, context)

    # 3. Act on the answer ------------------------------------------------------------------

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """The person answered (or the response timeout passed): approve, or stop and fail."""
        execution_id = check_execution_id(self.execution_id)
        event = event or {}
        if event.get("error_type") == "timeout":
            raise AirflowException(
                f"Nobody answered the approval request of Cerebelum execution {execution_id} within "
                f"{self.response_timeout}; nothing was sent to Core, where it still waits"
            )
        answer = HITLOperator.execute_complete(self, context, event)
        chosen = answer["chosen_options"][0]
        who = _responder(event)
        asked = context["ti"].xcom_pull(task_ids=self.task_id, key=DECISION_XCOM_KEY) or {}
        if chosen == self.REJECT:
            self._stop_rejected(execution_id, who)
        response = check_response(dict(answer.get("params_input") or {}), field_name="params_input")
        with self.hook.get_client() as client, task_errors():
            status = client.approve_execution(execution_id, response)
        self.log.info("Cerebelum execution %s: %s by %s, with %s", execution_id, status, who, response)
        decision = {
            "execution_id": execution_id,
            "step": asked.get("step", ""),
            "approval_status": str(status),
            "response": response,
            "responded_by": who,
        }
        if not self.wait_for_completion:
            return decision
        context["ti"].xcom_push(key=DECISION_XCOM_KEY, value=decision)
        self._defer_until(
            execution_id,
            success_states=(ExecutionState.COMPLETED,),
            failure_states=(ExecutionState.FAILED,),
            method_name="on_execution_finished",
        )
        return None  # not reached: defer() raises TaskDeferred

    def _stop_rejected(self, execution_id: str, who: str) -> NoReturn:
        from cerebelum_provider.exceptions import CerebelumError

        try:
            with self.hook.get_client() as client:
                client.stop_execution(execution_id)
        except CerebelumError as error:
            raise AirflowFailException(
                f"Cerebelum execution {execution_id}: approval rejected by {who}; stopping the "
                f"execution in Core failed: {error.message}"
            ) from None
        raise AirflowFailException(
            f"Cerebelum execution {execution_id}: approval rejected by {who}; the execution was "
            "stopped in Core"
        )

    # 4. Wait for the end -------------------------------------------------------------------

    def on_execution_finished(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """The approved execution finished: the decision and the final execution dict."""
        remember_execution_id(self, event)
        execution = task_outcome(event, failure_is_final=False, timeout_error=ExecutionWaitTimeout)
        decision = context["ti"].xcom_pull(task_ids=self.task_id, key=DECISION_XCOM_KEY) or {}
        self.log.info("Cerebelum execution %s finished: %s", self.execution_id, execution.get("status"))
        return {**decision, "execution": execution}


def _completed_without_asking(execution_id: str) -> str:
    return (
        f"Cerebelum execution {execution_id} completed without asking for approval: "
        "there is nothing to approve"
    )


def _responder(event: dict[str, Any]) -> str:
    user = event.get("responded_by_user")
    if isinstance(user, dict) and user.get("name"):
        return str(user["name"])
    return "the default answer at the response timeout" if event.get("timedout") else "an unknown user"


def _describe_request(execution_id: str, step: str, request: ApprovalInfo | None, body: str | None) -> str:
    """The Markdown the person reads: the task's own body, then Core's request and what each answer does."""
    lines = [body.rstrip(), ""] if body else []
    where = f"at step **{step}**" if step else "at its current step"
    lines.append(f"Cerebelum execution `{execution_id}` waits for approval {where}.")
    if request is not None:
        lines.append("")
        if request.approval_type:
            lines.append(f"- Approval type: {request.approval_type}")
        if request.timeout_ms:
            asked_at = f", asked at {request.requested_at.isoformat()}" if request.requested_at else ""
            lines.append(
                f"- Core's timeout: {request.timeout_ms / 1000:g} s{asked_at}; "
                f"{request.remaining_timeout_ms / 1000:.0f} s left when this was asked"
            )
        if request.data:
            asks = json.dumps(request.data, indent=2, sort_keys=True)
            lines += ["- What it asks:", "", "```json", asks, "```"]
    lines.append("")
    lines.append(
        "**Approve** approves it in Core, with this form's values as the step's inputs. "
        "**Reject** stops the execution in Core."
    )
    return "\n".join(lines)
