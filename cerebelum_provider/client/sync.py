"""``SyncExecutionClient``: the blocking twin of ``ExecutionClient``, for code without a loop."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar

from cerebelum_provider.client import _operations as ops
from cerebelum_provider.client import _rerun
from cerebelum_provider.client._base import ClientBase
from cerebelum_provider.client._grpc_transport import SyncGrpcTransport
from cerebelum_provider.client._http_transport import SyncHttpTransport
from cerebelum_provider.client.config import ClientSettings, CoreAPI
from cerebelum_provider.client.transport import SyncTransport
from cerebelum_provider.models import (
    ExecutionHandle,
    ExecutionState,
    ExecutionStatus,
    PollAnswer,
    Rerun,
    ResumeAnswer,
)


class SyncExecutionClient(ClientBase[SyncTransport]):
    """Same arguments, methods, answers and errors as ``ExecutionClient``, blocking; thread-safe.

    ``iter_executions`` is a plain iterator. See ``ExecutionClient`` for the arguments;
    ``transport=`` takes a :class:`~cerebelum_provider.client.transport.SyncTransport`.
    """

    transport_classes: ClassVar[dict[CoreAPI, Callable[[ClientSettings], SyncTransport]]] = {
        CoreAPI.GRPC: SyncGrpcTransport,
        CoreAPI.HTTP: SyncHttpTransport,
    }
    transport_is_async: ClassVar[bool] = False

    def get_execution_status(self, execution_id: str) -> ExecutionStatus:
        """The execution's current status.

        Raises:
            ExecutionNotFoundError: Core knows no such execution.
            CoreUnavailableError, CerebelumAuthError, CerebelumTLSError, CerebelumRPCError.
        """
        return self._transport.call(ops.get_execution_status(execution_id))

    def poll_execution(self, execution_id: str) -> PollAnswer:
        """The state, sleep and (on demand) whole status; see ``ExecutionClient.poll_execution``."""
        return self._transport.call(ops.poll_execution(execution_id))

    def list_executions(
        self,
        workflow_name: str | None = None,
        status: ExecutionState | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[ExecutionStatus], int, bool]:
        """One page of executions: ``(executions, total_count, has_more)``; see ``ExecutionClient``."""
        return self._transport.call(ops.list_executions(workflow_name, status, limit, offset)).as_tuple()

    def list_execution_ids(
        self,
        workflow_name: str | None = None,
        status: ExecutionState | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[tuple[str, str]], int, bool]:
        """One page as ``(execution_id, workflow_name)`` pairs; see ``ExecutionClient``."""
        return self._transport.call(ops.list_execution_ids(workflow_name, status, limit, offset)).as_tuple()

    def iter_executions(
        self,
        workflow_name: str | None = None,
        status: ExecutionState | str | None = None,
        page_size: int = 100,
    ) -> Iterator[ExecutionStatus]:
        """Every matching execution, each once, even while the set changes between pages.

        Raises:
            TypeError, ValueError: bad arguments, at the call (before anything is sent).
        """
        pager = ops.ExecutionPager(workflow_name, status, page_size)
        return self._iterate(pager)

    def _iterate(self, pager: ops.ExecutionPager) -> Iterator[ExecutionStatus]:
        while (operation := pager.next_operation()) is not None:
            yield from pager.accept(self._transport.call(operation))

    def list_active_workflows(self) -> list[ExecutionStatus]:
        """Every RUNNING execution (all pages, not just the first)."""
        return list(self.iter_executions(status=ExecutionState.RUNNING))

    def resume_execution(self, execution_id: str, skip_completed_steps: bool = True) -> ResumeAnswer:
        """Ask Core to resume an execution: ``"resumed"``, ``"already_running"`` or ``"failed_to_resume"``."""
        return self._transport.call(ops.resume_execution(execution_id, skip_completed_steps))

    def execute_workflow(
        self,
        workflow_name: str,
        inputs: dict[str, Any] | None = None,
        *,
        correlation_id: str | None = None,
        tags: Sequence[str] | None = None,
        timeout_ms: int | None = None,
    ) -> ExecutionHandle:
        """Start a workflow and return its handle; never retried.

        Raises:
            WorkflowStartError: Core answered ``status="failed"``.
        """
        operation = ops.execute_workflow(
            workflow_name, inputs, correlation_id=correlation_id, tags=tags, timeout_ms=timeout_ms
        )
        return self._transport.call(operation)

    def stop_execution(self, execution_id: str) -> str:
        """Stop an execution (HTTP API only): ``"stopped"``; see ``ExecutionClient.stop_execution``."""
        return self._transport.call(ops.stop_execution(execution_id))

    def approve_execution(self, execution_id: str, response: dict[str, Any] | None = None) -> str:
        """Approve the step an execution waits on (HTTP API only): ``"approved"``; see
        ``ExecutionClient.approve_execution`` (the state is checked first)."""
        operation = ops.approve_execution(execution_id, response)
        if operation.grpc is None and self.api is CoreAPI.GRPC:
            return self._transport.call(operation)  # raises UnsupportedOperationError
        ops.require_waiting_for_approval(self.get_execution_status(execution_id), self.address)
        return self._transport.call(operation)

    def get_execution_events(self, execution_id: str) -> list[dict[str, Any]]:
        """The execution's event log (HTTP API only)."""
        return self._transport.call(ops.get_execution_events(execution_id))

    def rerun_execution(self, execution_id: str, *, known_reruns: Mapping[str, str] | None = None) -> Rerun:
        """Find the rerun of a failed execution, or start it (HTTP API only); see
        ``ExecutionClient.rerun_execution``."""
        self.require_http("Rerunning an execution", execution_id)
        plan = _rerun.rerun(execution_id, known_reruns, self.address)
        return _rerun.run_plan(plan, self._transport.call)

    def find_reruns(self, workflow_name: str | None = None) -> dict[str, str]:
        """The reruns Core holds, ``{failed id: rerun id}`` (HTTP API only); see
        ``ExecutionClient.find_reruns``."""
        self.require_http("Finding reruns")
        return _rerun.run_plan(_rerun.find_reruns(workflow_name), self._transport.call)

    def close(self) -> None:
        """Close the channel or connection pool; a later call opens a new one."""
        self._transport.close()

    def __enter__(self) -> SyncExecutionClient:  # noqa: PYI034 (Self needs Python 3.11)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
