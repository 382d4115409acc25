"""The one implementation of every client call, shared by both clients and both of Core's APIs.

Each public method of a client builds an :class:`Operation` here (validating its arguments
first, so nothing is sent on bad input) and hands it to its transport. An operation carries its
two wire forms side by side, built only when a transport asks for them: a :class:`GrpcCall`
(request message and conversion of the answer) and an :class:`HttpCall` (method, path, JSON and
conversion of the answer). Transports only send, receive and map failures onto the one error
hierarchy; the paging state machine of ``iter_executions`` lives here too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from google.protobuf.message import Message

from cerebelum_provider._arguments import check_bool, check_execution_id, check_int, check_tags, shown
from cerebelum_provider.client import _convert, _rest_convert
from cerebelum_provider.exceptions import (
    CerebelumRPCError,
    ExecutionNotFoundError,
    RequestRefusedError,
    WorkflowStartError,
)
from cerebelum_provider.models import (
    ExecutionHandle,
    ExecutionState,
    ExecutionStatus,
    PollAnswer,
    ResumeAnswer,
)
from cerebelum_provider.proto import worker_service_pb2 as pb

T = TypeVar("T")

#: Core cuts ``limit`` to 100; asking for more is a caller's mistake worth reporting.
MAX_PAGE_SIZE = 100
_INT32_MAX = 2**31 - 1

#: Passes in a row that may find nothing new over a changing set before iteration gives up.
MAX_IDLE_PASSES = 3


_EXECUTIONS = "/api/v1/executions"


@dataclass(frozen=True)
class GrpcCall(Generic[T]):
    """An operation's gRPC form: the RPC, its request, and ``convert(response, core_address)``.

    ``convert`` may raise a ``CerebelumError`` for an OK answer that means failure (an unknown
    execution, a workflow that did not start).
    """

    rpc: str
    request: Message
    convert: Callable[[Any, str], T]


@dataclass(frozen=True)
class HttpAnswer:
    """What Core's REST API answered: the HTTP status and the decoded JSON body (``{}`` if none)."""

    status_code: int
    body: Any

    @property
    def error_word(self) -> str:
        """The ``error`` field of an error body (``"not_found"``, ``":already_running"``), or ``""``."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error if isinstance(error, str) else ""


@dataclass(frozen=True)
class HttpCall(Generic[T]):
    """An operation's REST form: method, path (below the base URL), query, JSON body, and
    ``convert(answer, core_address)``.

    The transport hands ``convert`` every 2xx answer and the 404/422 answers that carry an
    operation's own meaning (unknown execution, already running, ...); other statuses are mapped
    by the transport itself.
    """

    method: str
    path: str
    convert: Callable[[HttpAnswer, str], T]
    params: dict[str, str | int] | None = None
    json: Any = None


@dataclass(frozen=True)
class Operation(Generic[T]):
    """One client call, validated, with its wire forms for both APIs.

    ``name`` is the gRPC method's name (also for operations only REST has), used in logs and
    errors. ``grpc`` is None for an operation Core's gRPC API lacks. ``idempotent`` says whether a
    transport may send it again after a failure that may have reached Core. ``status_read`` marks
    a read of one execution's status, which the released Core's REST API answers with HTTP 500
    while an engine is busy.
    """

    name: str
    grpc: Callable[[], GrpcCall[T]] | None
    http: Callable[[], HttpCall[T]]
    execution_id: str | None = None
    idempotent: bool = True
    status_read: bool = False


@dataclass(frozen=True)
class ExecutionPage(Generic[T]):
    """One ``list_executions`` answer (``list_execution_ids``: ``(id, workflow)`` pairs)."""

    executions: list[T]
    total_count: int
    has_more: bool

    def as_tuple(self) -> tuple[list[T], int, bool]:
        return self.executions, self.total_count, self.has_more


# -- validation -------------------------------------------------------------------------------


def check_filters(workflow_name: object, status: object) -> tuple[str | None, ExecutionState | None]:
    """Validate the optional list filters.

    Raises:
        TypeError, ValueError: see ``check_execution_id`` and ``ExecutionState.coerce``.
    """
    # "" would be sent as a filter and match nothing on Core: refuse it; None means no filter.
    name = None if workflow_name is None else check_execution_id(workflow_name, field_name="workflow_name")
    state = None if status is None else ExecutionState.coerce(status)  # type: ignore[arg-type]
    return name, state


# -- operations -------------------------------------------------------------------------------


def _execution_path(execution_id: str, action: str = "") -> str:
    # Ids are opaque to this client: quote every character that is not safe in one path segment.
    return f"{_EXECUTIONS}/{quote(execution_id, safe='')}{action}"


def _not_found(core_address: str, execution_id: str, detail: str = "") -> ExecutionNotFoundError:
    return ExecutionNotFoundError(
        f"Cerebelum Core at {core_address} knows no execution {execution_id!r}{detail}",
        core_address=core_address,
        execution_id=execution_id,
    )


def _refused(
    answer: HttpAnswer, what: str, core_address: str, execution_id: str | None
) -> RequestRefusedError:
    return RequestRefusedError(
        f"Cerebelum Core at {core_address} refused to {what}: HTTP {answer.status_code} "
        f"{shown(answer.body, 300)}",
        core_address=core_address,
        execution_id=execution_id,
        transport_code=answer.status_code,
    )


def get_execution_status(execution_id: str) -> Operation[ExecutionStatus]:
    """GetExecutionStatus; converters raise ``ExecutionNotFoundError`` for an unknown id."""
    execution_id = check_execution_id(execution_id, field_name="execution_id")
    return Operation(
        "GetExecutionStatus",
        lambda: _status_grpc_call(execution_id, _convert.found_status_from_proto),
        lambda: _status_http_call(execution_id),
        execution_id,
        status_read=True,
    )


def poll_execution(execution_id: str) -> Operation[PollAnswer]:
    """GetExecutionStatus for a poller: a :class:`PollAnswer`, converted whole only on demand over
    gRPC (Core's REST answer is small and converted at once); an unknown id raises as above."""
    execution_id = check_execution_id(execution_id, field_name="execution_id")

    def http() -> HttpCall[PollAnswer]:
        call = _status_http_call(execution_id)
        return HttpCall(
            call.method, call.path, lambda answer, address: PollAnswer.of(call.convert(answer, address))
        )

    return Operation(
        "GetExecutionStatus",
        lambda: _status_grpc_call(execution_id, _convert.poll_answer_from_proto),
        http,
        execution_id,
        status_read=True,
    )


def _status_grpc_call(execution_id: str, answer: Callable[..., T]) -> GrpcCall[T]:
    """GetExecutionStatus over gRPC; ``answer(response, execution_id=..., core_address=...)``
    converts an OK answer (and raises for Core's OK-with-not_found)."""

    def convert(response: pb.ExecutionStatus, core_address: str) -> T:
        return answer(response, execution_id=execution_id, core_address=core_address)

    return GrpcCall("GetExecutionStatus", pb.GetExecutionStatusRequest(execution_id=execution_id), convert)


def _status_http_call(execution_id: str) -> HttpCall[ExecutionStatus]:
    def convert(answer: HttpAnswer, core_address: str) -> ExecutionStatus:
        if answer.status_code == 404:
            raise _not_found(core_address, execution_id)
        if answer.status_code >= 300:
            raise _refused(answer, f"report execution {execution_id!r}", core_address, execution_id)
        return _rest_convert.status_from_json(answer.body, execution_id=execution_id)

    return HttpCall("GET", _execution_path(execution_id), convert)


def list_executions(
    workflow_name: str | None = None,
    status: ExecutionState | str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Operation[ExecutionPage[ExecutionStatus]]:
    """ListExecutions; optional filters given as None are not sent.

    Over REST, ``status=UNSPECIFIED`` (which gRPC reads as "no filter") raises ``ValueError`` when
    the REST form is built, before sending: give None for no filter.
    """
    return _listing(
        workflow_name, status, limit, offset, _convert.status_from_proto, _rest_convert.summary_from_json
    )


def list_execution_ids(
    workflow_name: str | None = None,
    status: ExecutionState | str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Operation[ExecutionPage[tuple[str, str]]]:
    """``list_executions`` answered as ``(execution_id, workflow_name)`` pairs only ("" where Core
    names no workflow): a loop that lists often keeps the rest of each status out of its heap."""
    return _listing(workflow_name, status, limit, offset, _id_from_proto, _rest_convert.id_from_json)


def _id_from_proto(execution: Any) -> tuple[str, str]:
    return execution.execution_id, execution.workflow_name


def _listing(
    workflow_name: object,
    status: object,
    limit: object,
    offset: object,
    from_proto: Callable[[Any], T],
    from_json: Callable[[dict[str, Any]], T],
) -> Operation[ExecutionPage[T]]:
    workflow, state = check_filters(workflow_name, status)
    page_size = check_int(limit, field_name="limit", minimum=1, maximum=MAX_PAGE_SIZE)
    start = check_int(offset, field_name="offset", minimum=0, maximum=_INT32_MAX)

    def grpc() -> GrpcCall[ExecutionPage[T]]:
        request = pb.ListExecutionsRequest(limit=page_size, offset=start)
        # Core filters on workflow_name whenever the field is present, so it is set only when given.
        if workflow is not None:
            request.workflow_name = workflow
        if state is not None:
            request.status = _convert.state_to_wire(state)

        def convert(response: pb.ListExecutionsResponse, core_address: str) -> ExecutionPage[T]:
            return ExecutionPage(
                executions=[from_proto(execution) for execution in response.executions],
                total_count=response.total_count,
                has_more=response.has_more,
            )

        return GrpcCall("ListExecutions", request, convert)

    def http() -> HttpCall[ExecutionPage[T]]:
        params: dict[str, str | int] = {"limit": page_size, "offset": start}
        if workflow is not None:
            params["workflow"] = workflow
        if state is not None:
            if state not in _rest_convert.LIST_FILTER_WORDS:
                raise ValueError(
                    f"status={state.name} is no filter over Core's HTTP API; give status=None to list "
                    "every state"
                )
            params["status"] = _rest_convert.LIST_FILTER_WORDS[state]

        def convert(answer: HttpAnswer, core_address: str) -> ExecutionPage[T]:
            if answer.status_code >= 300:
                raise _refused(answer, "list executions", core_address, None)
            body = answer.body if isinstance(answer.body, dict) else {}
            listed = body.get("executions")
            entries = listed if isinstance(listed, list) else []
            executions = [from_json(entry) for entry in entries if isinstance(entry, dict)]
            total = body.get("total")
            total_count = total if isinstance(total, int) and not isinstance(total, bool) else len(executions)
            return ExecutionPage(executions, total_count, start + len(executions) < total_count)

        return HttpCall("GET", _EXECUTIONS, convert, params=params)

    return Operation("ListExecutions", grpc, http)


def resume_execution(execution_id: str, skip_completed_steps: bool = True) -> Operation[ResumeAnswer]:
    """ResumeExecution; the answer is a ``ResumeAnswer``, on both APIs.

    REST answers 200 for "resumed" and 422 ``":already_running"`` for "already_running"; any
    other refusal (422 ``":not_found"``, 404) is "failed_to_resume", as gRPC says it. REST has no
    ``skip_completed_steps`` (Core skips completed steps either way).
    """
    execution_id = check_execution_id(execution_id, field_name="execution_id")
    skip_completed_steps = check_bool(skip_completed_steps, field_name="skip_completed_steps")

    def grpc() -> GrpcCall[ResumeAnswer]:
        request = pb.ResumeExecutionRequest(
            execution_id=execution_id, skip_completed_steps=skip_completed_steps
        )

        def convert(response: pb.ExecutionHandle, core_address: str) -> ResumeAnswer:
            try:
                return ResumeAnswer(response.status)
            except ValueError:
                raise CerebelumRPCError(
                    f"Cerebelum Core at {core_address} answered an unknown resume status "
                    f"{response.status!r} for execution {execution_id!r}",
                    core_address=core_address,
                    execution_id=execution_id,
                ) from None

        return GrpcCall("ResumeExecution", request, convert)

    def http() -> HttpCall[ResumeAnswer]:
        def convert(answer: HttpAnswer, core_address: str) -> ResumeAnswer:
            if answer.status_code < 300:
                return ResumeAnswer.RESUMED
            if answer.status_code == 422 and answer.error_word.lstrip(":") == "already_running":
                return ResumeAnswer.ALREADY_RUNNING
            if answer.status_code in (404, 422):
                return ResumeAnswer.FAILED_TO_RESUME
            raise _refused(answer, f"resume execution {execution_id!r}", core_address, execution_id)

        return HttpCall("POST", _execution_path(execution_id, "/resume"), convert)

    return Operation("ResumeExecution", grpc, http, execution_id)


def execute_workflow(
    workflow_name: str,
    inputs: dict[str, Any] | None = None,
    *,
    correlation_id: str | None = None,
    tags: Sequence[str] | None = None,
    timeout_ms: int | None = None,
) -> Operation[ExecutionHandle]:
    """ExecuteWorkflow; converters raise ``WorkflowStartError`` when Core did not start it.

    Core's REST API takes only the workflow and its inputs: ``correlation_id``, ``tags`` and
    ``timeout_ms`` raise ``ValueError`` when the REST form is built (before sending) rather than
    being dropped without a word.
    """
    workflow_name = check_execution_id(workflow_name, field_name="workflow_name")
    inputs_struct = None if inputs is None else _convert.python_to_struct(inputs, field_name="inputs")
    correlation_id = (
        None if correlation_id is None else check_execution_id(correlation_id, field_name="correlation_id")
    )
    checked_tags = None if tags is None else check_tags(tags)
    if timeout_ms is not None:
        timeout_ms = check_int(timeout_ms, field_name="timeout_ms", minimum=1, maximum=_INT32_MAX)

    def not_started(core_address: str, answered: str) -> WorkflowStartError:
        return WorkflowStartError(
            f"Cerebelum Core at {core_address} did not start workflow {workflow_name!r} ({answered}); "
            "is its blueprint submitted?",
            core_address=core_address,
        )

    def grpc() -> GrpcCall[ExecutionHandle]:
        request = pb.ExecuteRequest(workflow_module=workflow_name)
        if inputs_struct is not None:
            request.inputs.CopyFrom(inputs_struct)
        if correlation_id is not None:
            request.options.correlation_id = correlation_id
        if checked_tags is not None:
            request.options.tags.extend(checked_tags)
        if timeout_ms is not None:
            request.options.timeout_ms = timeout_ms

        def convert(response: pb.ExecutionHandle, core_address: str) -> ExecutionHandle:
            handle = _convert.handle_from_proto(response)
            if handle.status == "failed":
                raise not_started(core_address, f"answered status='failed', id {handle.execution_id!r}")
            return handle

        return GrpcCall("ExecuteWorkflow", request, convert)

    def http() -> HttpCall[ExecutionHandle]:
        unsupported = [
            name
            for name, value in (
                ("correlation_id", correlation_id),
                ("tags", checked_tags),
                ("timeout_ms", timeout_ms),
            )
            if value is not None
        ]
        if unsupported:
            raise ValueError(
                f"{', '.join(unsupported)} cannot be sent over Core's HTTP API, which starts a workflow "
                "from its name and inputs only; put what you need into the inputs, or use the gRPC API"
            )

        def convert(answer: HttpAnswer, core_address: str) -> ExecutionHandle:
            if answer.status_code == 404:
                raise not_started(core_address, f"HTTP 404 {answer.error_word or 'not found'}")
            if answer.status_code >= 300:
                raise _refused(answer, f"start workflow {workflow_name!r}", core_address, None)
            handle = _rest_convert.handle_from_json(answer.body if isinstance(answer.body, dict) else {})
            if not handle.execution_id:
                raise not_started(core_address, f"answered without an execution id: {shown(answer.body)}")
            return handle

        body = {"workflow": workflow_name, "input": inputs if inputs is not None else {}}
        return HttpCall("POST", _EXECUTIONS, convert, json=body)

    # Core ignores options.execution_id, so a retried start would start a second execution.
    return Operation("ExecuteWorkflow", grpc, http, idempotent=False)


def stop_execution(execution_id: str) -> Operation[str]:
    """Stop an execution (REST only): ``"stopped"``.

    Raises (from the converter): ``ExecutionNotFoundError`` when Core has no live process for it
    (unknown, or already ended).
    """
    execution_id = check_execution_id(execution_id, field_name="execution_id")

    def http() -> HttpCall[str]:
        def convert(answer: HttpAnswer, core_address: str) -> str:
            if answer.status_code == 404:
                raise _not_found(core_address, execution_id, " with a running process to stop")
            if answer.status_code >= 300:
                raise _refused(answer, f"stop execution {execution_id!r}", core_address, execution_id)
            return "stopped"

        return HttpCall("POST", _execution_path(execution_id, "/stop"), convert)

    # A repeated stop answers 404 once the first has ended the process: sent again only when the
    # first attempt surely never reached Core.
    return Operation("StopExecution", None, http, execution_id, idempotent=False)


def approve_execution(execution_id: str, response: dict[str, Any] | None = None) -> Operation[str]:
    """Approve the step an execution waits on (REST only), with an optional response: ``"approved"``.

    Core hands ``response`` to the step that asked, as its inputs. Its key ``"id"`` is refused:
    Core's router overwrites it with the execution id.

    Raises (from the converter): ``RequestRefusedError`` when the execution waits for no approval.
    """
    execution_id = check_execution_id(execution_id, field_name="execution_id")
    if response is None:
        response = {}
    _convert.python_to_struct(response, field_name="response")  # the same JSON rules as inputs
    if "id" in response:
        raise ValueError(
            "response must not contain the key 'id': Core's HTTP API replaces it with the execution id"
        )

    def http() -> HttpCall[str]:
        def convert(answer: HttpAnswer, core_address: str) -> str:
            if answer.status_code >= 300:
                raise _refused(
                    answer,
                    f"approve execution {execution_id!r} (is it waiting for approval?)",
                    core_address,
                    execution_id,
                )
            return "approved"

        return HttpCall("POST", _execution_path(execution_id, "/approve"), convert, json=response)

    # A repeated approval is refused with 422 once the first was applied: sent again only when the
    # first attempt surely never reached Core.
    return Operation("ApproveExecution", None, http, execution_id, idempotent=False)


def require_waiting_for_approval(status: ExecutionStatus, core_address: str) -> None:
    """Refuse to approve an execution that waits for no approval, before anything is sent.

    Core (release be56c90) answers an approval of a completed execution with HTTP 500 and starts a
    new execution that runs the whole workflow again, so the clients check the state first.

    Raises:
        RequestRefusedError: the execution is in any other state.
    """
    if status.status is not ExecutionState.WAITING_FOR_APPROVAL:
        raise RequestRefusedError(
            f"Cerebelum execution {status.execution_id} is {status.status.name}, not waiting for approval; "
            f"nothing was sent to Core at {core_address}",
            core_address=core_address,
            execution_id=status.execution_id,
        )


def get_execution_events(execution_id: str) -> Operation[list[dict[str, Any]]]:
    """An execution's event log (REST only): ``[{"version", "type", "data", "timestamp"}, ...]``.

    Raises (from the converter): ``ExecutionNotFoundError`` for an empty log (Core answers 200 with
    no events for an id it does not know; every real execution has its start event).
    """
    execution_id = check_execution_id(execution_id, field_name="execution_id")

    def http() -> HttpCall[list[dict[str, Any]]]:
        def convert(answer: HttpAnswer, core_address: str) -> list[dict[str, Any]]:
            if answer.status_code == 404:
                raise _not_found(core_address, execution_id)
            if answer.status_code >= 300:
                raise _refused(answer, f"read the events of {execution_id!r}", core_address, execution_id)
            body = answer.body if isinstance(answer.body, dict) else {}
            events = [event for event in body.get("events") or [] if isinstance(event, dict)]
            if not events:
                raise _not_found(core_address, execution_id, " (its event log is empty)")
            return events

        return HttpCall("GET", _execution_path(execution_id, "/events"), convert)

    return Operation("GetExecutionEvents", None, http, execution_id)


# -- paging -----------------------------------------------------------------------------------


@dataclass
class ExecutionPager:
    """The paging state machine behind ``iter_executions``.

    Core orders by execution id, but its status filter reads each execution's latest event, so
    executions leave and enter a filtered set while we page and offset paging can skip or
    repeat items. The pager runs passes of offset paging, remembering every id
    already yielded. A pass is *clean* when it saw no id twice, ``total_count`` stayed the same
    on all its pages, and it saw exactly ``total_count`` ids: then nothing can have been
    skipped and iteration stops. Otherwise another pass starts from offset 0: a pass that was
    not clean can have skipped an execution even when it found nothing new. Only a set that
    keeps changing through ``MAX_IDLE_PASSES`` whole passes in a row, none of them finding a new
    id, ends iteration without a clean pass (listing is expensive for Core; a set that never
    holds still cannot be read completely by offset paging anyway).

    Use: ``while (op := pager.next_operation()) is not None: new = pager.accept(send(op))``.
    """

    workflow_name: str | None = None
    status: ExecutionState | str | None = None
    page_size: int = MAX_PAGE_SIZE
    yielded_ids: set[str] = field(default_factory=set, init=False)
    passes: int = field(default=1, init=False)
    _offset: int = field(default=0, init=False)
    _pass_ids: set[str] = field(default_factory=set, init=False)
    _pass_totals: set[int] = field(default_factory=set, init=False)
    _pass_duplicate: bool = field(default=False, init=False)
    _pass_new: int = field(default=0, init=False)
    _idle_passes: int = field(default=0, init=False)
    _done: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.workflow_name, self.status = check_filters(self.workflow_name, self.status)
        self.page_size = check_int(self.page_size, field_name="page_size", minimum=1, maximum=MAX_PAGE_SIZE)

    def next_operation(self) -> Operation[ExecutionPage] | None:
        """The next page to ask for, or None when iteration is over."""
        if self._done:
            return None
        return list_executions(self.workflow_name, self.status, limit=self.page_size, offset=self._offset)

    def accept(self, page: ExecutionPage) -> list[ExecutionStatus]:
        """Record one page; return its executions not yielded before, in page order."""
        fresh = []
        for execution in page.executions:
            if execution.execution_id in self._pass_ids:
                self._pass_duplicate = True
            self._pass_ids.add(execution.execution_id)
            if execution.execution_id not in self.yielded_ids:
                self.yielded_ids.add(execution.execution_id)
                fresh.append(execution)
        self._pass_totals.add(page.total_count)
        self._pass_new += len(fresh)
        self._offset += len(page.executions)
        if not page.has_more or not page.executions:
            self._end_pass()
        return fresh

    def _end_pass(self) -> None:
        clean = (
            not self._pass_duplicate
            and len(self._pass_totals) == 1
            and len(self._pass_ids) == next(iter(self._pass_totals))
        )
        self._idle_passes = self._idle_passes + 1 if self._pass_new == 0 else 0
        if clean or self._idle_passes >= MAX_IDLE_PASSES:
            self._done = True
            return
        self.passes += 1
        self._offset = 0
        self._pass_ids = set()
        self._pass_totals = set()
        self._pass_duplicate = False
        self._pass_new = 0
