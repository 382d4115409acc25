"""``ExecutionClient``: the asyncio client for Cerebelum Core, on ``grpc.aio`` or ``httpx``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar

from cerebelum_provider.client import _operations as ops
from cerebelum_provider.client import _rerun
from cerebelum_provider.client._base import ClientBase
from cerebelum_provider.client._grpc_transport import AsyncGrpcTransport
from cerebelum_provider.client._http_transport import AsyncHttpTransport
from cerebelum_provider.client.config import ClientSettings, CoreAPI
from cerebelum_provider.client.transport import AsyncTransport
from cerebelum_provider.models import (
    ExecutionHandle,
    ExecutionState,
    ExecutionStatus,
    PollAnswer,
    Rerun,
    ResumeAnswer,
)


class ExecutionClient(ClientBase[AsyncTransport]):
    """Ask Cerebelum Core about executions, resume them, start workflows; never blocks the loop.

    The address's scheme picks Core's API: ``http://`` or ``https://`` speak its REST API,
    ``grpc://``, ``grpcs://`` or a bare ``host:port`` its gRPC API. Both answer with the same
    models and fail with the same errors. One channel (gRPC) or connection pool (REST) per
    client, opened on the first call and reused by every call; every call has a deadline
    (``timeout`` seconds) and transient failures are retried per ``retry``. All errors are
    ``cerebelum_provider.exceptions.CerebelumError`` subclasses; bad arguments raise
    ``TypeError``/``ValueError`` before anything is sent.

    What REST says less: a status has no workflow name, inputs, timestamps, step list, sleep or
    approval details; a list entry has no progress, and an execution that sleeps or waits for
    approval is *listed* as RUNNING (Core derives a listed state from its last event; the
    ``status`` filter, though, finds it under its own state, as over gRPC). Only REST can stop or
    approve an execution and read its event log; over gRPC those raise
    ``UnsupportedOperationError``.

    Args:
        core_url: ``"host:port"``, ``"grpc(s)://host:port"`` or ``"http(s)://host:port[/prefix]"``.
        tls: True (system roots), a ``TLSConfig``, False/None (plaintext unless grpcs/https).
        token: sent as ``Authorization: Bearer <token>``; never logged nor shown in ``repr()``.
        timeout: deadline of each call attempt, in seconds.
        retry: the retry budget; None means ``RetryConfig()``.
        transport: an :class:`~cerebelum_provider.client.transport.AsyncTransport` to send every
            call through instead of the one built from the arguments above, which it replaces
            (giving both raises ``ValueError``).
    """

    transport_classes: ClassVar[dict[CoreAPI, Callable[[ClientSettings], AsyncTransport]]] = {
        CoreAPI.GRPC: AsyncGrpcTransport,
        CoreAPI.HTTP: AsyncHttpTransport,
    }
    transport_is_async: ClassVar[bool] = True

    async def get_execution_status(self, execution_id: str) -> ExecutionStatus:
        """The execution's current status.

        Raises:
            ExecutionNotFoundError: Core knows no such execution.
            CoreUnavailableError, CerebelumAuthError, CerebelumTLSError, CerebelumRPCError.
        """
        return await self._transport.call(ops.get_execution_status(execution_id))

    async def poll_execution(self, execution_id: str) -> PollAnswer:
        """``get_execution_status`` for a loop that asks often: the answer's state and sleep are read
        at once, the whole status (``answer.status()``) converted only when it is asked for.

        Raises:
            The errors of ``get_execution_status``.
        """
        return await self._transport.call(ops.poll_execution(execution_id))

    async def list_executions(
        self,
        workflow_name: str | None = None,
        status: ExecutionState | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[ExecutionStatus], int, bool]:
        """One page of executions, in execution id order: ``(executions, total_count, has_more)``.

        ``limit`` is 1..100. Filters left as None are not sent. For every match use
        :meth:`iter_executions`, which copes with the order moving between pages.
        """
        page = await self._transport.call(ops.list_executions(workflow_name, status, limit, offset))
        return page.as_tuple()

    async def list_execution_ids(
        self,
        workflow_name: str | None = None,
        status: ExecutionState | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[tuple[str, str]], int, bool]:
        """``list_executions`` with each execution as ``(execution_id, workflow_name)`` only ("" where
        Core names no workflow): for a loop that lists often and needs no more."""
        page = await self._transport.call(ops.list_execution_ids(workflow_name, status, limit, offset))
        return page.as_tuple()

    def iter_executions(
        self,
        workflow_name: str | None = None,
        status: ExecutionState | str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[ExecutionStatus]:
        """Every matching execution, each once, even while the set changes between pages.

        Use as ``async for execution in client.iter_executions(...)``.

        Raises:
            TypeError, ValueError: bad arguments, at the call (before anything is sent).
        """
        return self._iterate(ops.ExecutionPager(workflow_name, status, page_size))

    async def _iterate(self, pager: ops.ExecutionPager) -> AsyncIterator[ExecutionStatus]:
        while (operation := pager.next_operation()) is not None:
            for execution in pager.accept(await self._transport.call(operation)):
                yield execution

    async def list_active_workflows(self) -> list[ExecutionStatus]:
        """Every RUNNING execution (all pages, not just the first); not those that sleep or wait
        for approval, on both APIs."""
        return [execution async for execution in self.iter_executions(status=ExecutionState.RUNNING)]

    async def resume_execution(self, execution_id: str, skip_completed_steps: bool = True) -> ResumeAnswer:
        """Ask Core to resume an execution: ``"resumed"``, ``"already_running"`` or ``"failed_to_resume"``.

        Safe to retry: a second resume answers ``"already_running"``.
        """
        return await self._transport.call(ops.resume_execution(execution_id, skip_completed_steps))

    async def execute_workflow(
        self,
        workflow_name: str,
        inputs: dict[str, Any] | None = None,
        *,
        correlation_id: str | None = None,
        tags: Sequence[str] | None = None,
        timeout_ms: int | None = None,
    ) -> ExecutionHandle:
        """Start a workflow and return its handle (``status == "running"``).

        Never retried (Core would start a second execution).

        Raises:
            WorkflowStartError: Core answered ``status="failed"`` (e.g. no blueprint for the workflow).
        """
        operation = ops.execute_workflow(
            workflow_name, inputs, correlation_id=correlation_id, tags=tags, timeout_ms=timeout_ms
        )
        return await self._transport.call(operation)

    async def stop_execution(self, execution_id: str) -> str:
        """Stop an execution (HTTP API only): ``"stopped"``.

        Core ends the execution's process; its state stays as it was (no event records a stop).

        Raises:
            UnsupportedOperationError: over gRPC (before sending).
            ExecutionNotFoundError: Core has no running process for it (unknown, or already ended).
        """
        return await self._transport.call(ops.stop_execution(execution_id))

    async def approve_execution(self, execution_id: str, response: dict[str, Any] | None = None) -> str:
        """Approve the step an execution waits on (HTTP API only): ``"approved"``.

        ``response`` (JSON-like) reaches the step that asked for approval, as its inputs.

        The execution's state is read first: one that waits for no approval is refused without
        sending the approval (Core would start a new execution for a completed one).

        Raises:
            UnsupportedOperationError: over gRPC (before sending).
            RequestRefusedError: the execution waits for no approval.
        """
        operation = ops.approve_execution(execution_id, response)
        if operation.grpc is None and self.api is CoreAPI.GRPC:
            return await self._transport.call(operation)  # raises UnsupportedOperationError
        ops.require_waiting_for_approval(await self.get_execution_status(execution_id), self.address)
        return await self._transport.call(operation)

    async def get_execution_events(self, execution_id: str) -> list[dict[str, Any]]:
        """The execution's event log (HTTP API only): ``[{"version", "type", "data", "timestamp"}]``.

        Raises:
            UnsupportedOperationError: over gRPC (before sending).
            ExecutionNotFoundError: Core has no events for this id.
        """
        return await self._transport.call(ops.get_execution_events(execution_id))

    async def rerun_execution(
        self, execution_id: str, *, known_reruns: Mapping[str, str] | None = None
    ) -> Rerun:
        """Find the rerun of a failed execution, or start it (HTTP API only): a new execution of its
        workflow with its inputs as Core's event log stored them (booleans as ``"true"``/``"false"``,
        numbers as floats when it was started over gRPC), plus the input ``_cerebelum_rerun_of``
        naming ``execution_id``. Every step runs again, completed ones included.

        Exactly once: the executions of the workflow are searched (their start events) for a rerun
        of ``execution_id`` first, unless ``known_reruns`` (``{failed id: rerun id}``, from
        :meth:`find_reruns`) is given. The state of ``execution_id`` is not checked: the caller knows
        that it failed and that Core did not resume it (the operators' ``on_not_resumed="rerun"``).

        Returns:
            The :class:`~cerebelum_provider.models.Rerun` (``started`` False when found).

        Raises:
            UnsupportedOperationError: over gRPC (before sending).
            RerunRefusedError: the execution is itself a rerun, or its log names no workflow.
            ExecutionNotFoundError: Core has no events for it.
            WorkflowStartError: Core refused to start the workflow.
        """
        self.require_http("Rerunning an execution", execution_id)
        plan = _rerun.rerun(execution_id, known_reruns, self.address)
        return await _rerun.run_plan_async(plan, self._transport.call)

    async def find_reruns(self, workflow_name: str | None = None) -> dict[str, str]:
        """``{failed execution id: id of its rerun}`` for the reruns of ``workflow_name`` (None: of
        every workflow) Core holds (HTTP API only); reads the event log of every listed execution.

        Raises:
            UnsupportedOperationError: over gRPC (before sending).
        """
        self.require_http("Finding reruns")
        return await _rerun.run_plan_async(_rerun.find_reruns(workflow_name), self._transport.call)

    async def close(self) -> None:
        """Close the channel or connection pool; a later call opens a new one."""
        await self._transport.close()

    async def __aenter__(self) -> ExecutionClient:  # noqa: PYI034 (Self needs Python 3.11)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
