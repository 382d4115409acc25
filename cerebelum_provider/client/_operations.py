"""The one implementation of every client call, shared by the async and the sync client.

Each public method of a client builds an :class:`Operation` here (validating its arguments
first, so nothing is sent on bad input) and hands it to its transport; the two clients only
differ in how they send. The paging state machine of ``iter_executions`` lives here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from cerebelum_provider._arguments import check_bool, shown
from cerebelum_provider.client import _convert
from cerebelum_provider.exceptions import WorkflowStartError
from cerebelum_provider.models import ExecutionHandle, ExecutionState, ExecutionStatus
from cerebelum_provider.proto import worker_service_pb2 as pb

T = TypeVar("T")

#: Longest execution id or workflow name accepted; Core's ids are UUIDs, far shorter.
MAX_ID_LENGTH = 1024
#: Core cuts ``limit`` to 100; asking for more is a caller's mistake worth reporting.
MAX_PAGE_SIZE = 100
_INT32_MAX = 2**31 - 1

#: Passes in a row that may find nothing new over a changing set before iteration gives up.
MAX_IDLE_PASSES = 3

#: What ``resume_execution`` can answer.
RESUME_ANSWERS = ("resumed", "already_running", "failed_to_resume")


@dataclass(frozen=True)
class Operation(Generic[T]):
    """One RPC ready to send: its name, its request, and how to turn the answer into ``T``.

    ``convert(response, core_address)`` may raise a ``CerebelumError`` for an OK answer that
    means failure (an unknown execution, a workflow that did not start). ``idempotent`` says
    whether the transport may retry it.
    """

    rpc: str
    request: Message
    convert: Callable[[Any, str], T]
    execution_id: str | None = None
    idempotent: bool = True


@dataclass(frozen=True)
class ExecutionPage:
    """One ``list_executions`` answer."""

    executions: list[ExecutionStatus]
    total_count: int
    has_more: bool

    def as_tuple(self) -> tuple[list[ExecutionStatus], int, bool]:
        return self.executions, self.total_count, self.has_more


# -- validation -------------------------------------------------------------------------------


def check_identifier(name: str, value: object) -> str:
    """Return ``value`` when it is a usable id/name.

    Raises:
        TypeError: not a string.
        ValueError: empty, blank, or longer than ``MAX_ID_LENGTH``.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a non-empty string, got {type(value).__name__} {shown(value)}")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"{name} is {len(value)} characters long; at most {MAX_ID_LENGTH} are accepted")
    return value


def check_int(name: str, value: object, *, minimum: int, maximum: int) -> int:
    """Return ``value`` when it is an int (not a bool) in ``minimum..maximum``.

    Raises:
        TypeError: not an int (``True`` and ``"10"`` are refused).
        ValueError: outside the range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name} must be an int in {minimum}..{maximum}, got {type(value).__name__} {shown(value)}"
        )
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be in {minimum}..{maximum}, got {value}")
    return value


def check_filters(workflow_name: object, status: object) -> tuple[str | None, ExecutionState | None]:
    """Validate the optional list filters.

    Raises:
        TypeError, ValueError: see :func:`check_identifier` and ``ExecutionState.coerce``.
    """
    # "" would be sent as a filter and match nothing on Core: refuse it; None means no filter.
    name = None if workflow_name is None else check_identifier("workflow_name", workflow_name)
    state = None if status is None else ExecutionState.coerce(status)  # type: ignore[arg-type]
    return name, state


def _check_tags(tags: object) -> list[str]:
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise TypeError(f"tags must be a list of strings, got {type(tags).__name__} {shown(tags)}")
    checked = list(tags)
    for tag in checked:
        if not isinstance(tag, str):
            raise TypeError(f"tags must be a list of strings; {tag!r} is a {type(tag).__name__}")
    return checked


# -- operations -------------------------------------------------------------------------------


def get_execution_status(execution_id: str) -> Operation[ExecutionStatus]:
    """GetExecutionStatus; the converter raises ``ExecutionNotFoundError`` for an unknown id."""
    execution_id = check_identifier("execution_id", execution_id)

    def convert(response: pb.ExecutionStatus, core_address: str) -> ExecutionStatus:
        return _convert.found_status_from_proto(
            response, execution_id=execution_id, core_address=core_address
        )

    return Operation(
        "GetExecutionStatus", pb.GetExecutionStatusRequest(execution_id=execution_id), convert, execution_id
    )


def list_executions(
    workflow_name: str | None = None,
    status: ExecutionState | str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Operation[ExecutionPage]:
    """ListExecutions; optional filters given as None stay unset on the wire."""
    workflow_name, state = check_filters(workflow_name, status)
    limit = check_int("limit", limit, minimum=1, maximum=MAX_PAGE_SIZE)
    offset = check_int("offset", offset, minimum=0, maximum=_INT32_MAX)
    request = pb.ListExecutionsRequest(limit=limit, offset=offset)
    # Core filters on workflow_name whenever the field is present, so it is set only when given.
    if workflow_name is not None:
        request.workflow_name = workflow_name
    if state is not None:
        request.status = _convert.state_to_wire(state)
    return Operation("ListExecutions", request, _page_from_proto)


def _page_from_proto(response: pb.ListExecutionsResponse, core_address: str) -> ExecutionPage:
    return ExecutionPage(
        executions=[_convert.status_from_proto(execution) for execution in response.executions],
        total_count=response.total_count,
        has_more=response.has_more,
    )


def resume_execution(execution_id: str, skip_completed_steps: bool = True) -> Operation[str]:
    """ResumeExecution; the answer is Core's status string (see ``RESUME_ANSWERS``)."""
    execution_id = check_identifier("execution_id", execution_id)
    skip_completed_steps = check_bool(skip_completed_steps, field_name="skip_completed_steps")
    request = pb.ResumeExecutionRequest(execution_id=execution_id, skip_completed_steps=skip_completed_steps)
    return Operation("ResumeExecution", request, lambda response, _address: response.status, execution_id)


def execute_workflow(
    workflow_name: str,
    inputs: dict[str, Any] | None = None,
    *,
    correlation_id: str | None = None,
    tags: Sequence[str] | None = None,
    timeout_ms: int | None = None,
) -> Operation[ExecutionHandle]:
    """ExecuteWorkflow; the converter raises ``WorkflowStartError`` for Core's ``"failed"`` handle."""
    workflow_name = check_identifier("workflow_name", workflow_name)
    request = pb.ExecuteRequest(workflow_module=workflow_name)
    if inputs is not None:
        request.inputs.CopyFrom(_convert.python_to_struct(inputs, field_name="inputs"))
    if correlation_id is not None:
        request.options.correlation_id = check_identifier("correlation_id", correlation_id)
    if tags is not None:
        request.options.tags.extend(_check_tags(tags))
    if timeout_ms is not None:
        request.options.timeout_ms = check_int("timeout_ms", timeout_ms, minimum=1, maximum=_INT32_MAX)

    def convert(response: pb.ExecutionHandle, core_address: str) -> ExecutionHandle:
        handle = _convert.handle_from_proto(response)
        if handle.status == "failed":
            raise WorkflowStartError(
                f"Cerebelum Core at {core_address} did not start workflow {workflow_name!r} "
                f"(answered status='failed', id {handle.execution_id!r}); is its blueprint submitted?",
                core_address=core_address,
            )
        return handle

    # Core ignores options.execution_id, so a retried start would start a second execution.
    return Operation("ExecuteWorkflow", request, convert, idempotent=False)


# -- paging -----------------------------------------------------------------------------------


@dataclass
class ExecutionPager:
    """The paging state machine behind ``iter_executions``.

    Core orders by most recent activity and the order moves while we page, so offset paging
    can skip or repeat items. The pager runs passes of offset paging, remembering every id
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
        self.page_size = check_int("page_size", self.page_size, minimum=1, maximum=MAX_PAGE_SIZE)

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
