"""A real grpc.aio server on loopback whose answers each test scripts.

For answers and faults the Core emulator cannot produce (odd messages, scripted status codes,
reordering between pages). It runs in its own thread and event loop, so blocking clients and
asyncio clients can both talk to it, and it records every request it received (the decoded
message and its metadata) so tests can assert on what was actually sent.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from cerebelum_provider.proto import worker_service_pb2 as pb
from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

STATUS_RPCS = ("GetExecutionStatus", "ListExecutions", "ResumeExecution", "ExecuteWorkflow")


@dataclass(frozen=True)
class Abort:
    """Answer with this gRPC status instead of a message."""

    code: grpc.StatusCode
    details: str = "scripted failure"


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` (on the server), then give ``answer``."""

    seconds: float
    answer: Any


@dataclass(frozen=True)
class Received:
    """One request as the server decoded it."""

    rpc: str
    request: Any
    metadata: dict[str, str]
    peer: str  # the client connection (address:port) it arrived on


Answer = Any  # a response message, Abort, Delay, or a callable(request) -> Answer


class ScriptedCore:
    """``with ScriptedCore() as core:`` starts the server; ``core.address`` is ``127.0.0.1:PORT``."""

    def __init__(self, server_credentials: grpc.ServerCredentials | None = None) -> None:
        self._credentials = server_credentials
        self._queues: dict[str, collections.deque[Answer]] = collections.defaultdict(collections.deque)
        self._defaults: dict[str, Answer] = {}
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self.address = ""

    # -- scripting --------------------------------------------------------------------------

    def queue(self, rpc: str, *answers: Answer) -> None:
        """Answer the next calls of ``rpc`` with these, in order, before the default."""
        with self._lock:
            self._queues[rpc].extend(answers)

    def default(self, rpc: str, answer: Answer) -> None:
        """Answer every call of ``rpc`` with this once its queue is empty."""
        with self._lock:
            self._defaults[rpc] = answer

    def received(self, rpc: str | None = None) -> list[Received]:
        """Requests received so far (of one RPC, or all)."""
        with self._lock:
            return [item for item in self._received if rpc is None or item.rpc == rpc]

    def count(self, rpc: str | None = None) -> int:
        """How many calls arrived (of one RPC, or all)."""
        return len(self.received(rpc))

    # -- serving ----------------------------------------------------------------------------

    async def _answer(self, rpc: str, request: Any, context: grpc.aio.ServicerContext) -> Any:
        with self._lock:
            metadata = {key: value for key, value in (context.invocation_metadata() or ())}
            self._received.append(Received(rpc, request, metadata, context.peer()))
            queue = self._queues[rpc]
            answer = queue.popleft() if queue else self._defaults.get(rpc)
        if answer is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"nothing scripted for {rpc}")
        while True:
            if isinstance(answer, Delay):
                await asyncio.sleep(answer.seconds)
                answer = answer.answer
            elif isinstance(answer, Abort):
                await context.abort(answer.code, answer.details)
            elif callable(answer):
                answer = answer(request)
            else:
                return answer

    def _servicer(self) -> pb_grpc.WorkerServiceServicer:
        core = self

        class Servicer(pb_grpc.WorkerServiceServicer):
            async def GetExecutionStatus(self, request, context):  # noqa: N802 (gRPC names)
                return await core._answer("GetExecutionStatus", request, context)

            async def ListExecutions(self, request, context):  # noqa: N802
                return await core._answer("ListExecutions", request, context)

            async def ResumeExecution(self, request, context):  # noqa: N802
                return await core._answer("ResumeExecution", request, context)

            async def ExecuteWorkflow(self, request, context):  # noqa: N802
                return await core._answer("ExecuteWorkflow", request, context)

        return Servicer()

    def start(self) -> ScriptedCore:
        started = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            self._server = grpc.aio.server()
            pb_grpc.add_WorkerServiceServicer_to_server(self._servicer(), self._server)
            if self._credentials is None:
                port = self._server.add_insecure_port("127.0.0.1:0")
            else:
                port = self._server.add_secure_port("127.0.0.1:0", self._credentials)
            await self._server.start()
            self.address = f"127.0.0.1:{port}"
            self._stopping = asyncio.Event()
            started.set()
            await self._stopping.wait()
            await self._server.stop(grace=None)

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(serve())
            except BaseException as exc:  # reported to the starting thread below
                failure.append(exc)
                started.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="scripted-core", daemon=True)
        self._thread.start()
        started.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._stopping is not None and self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> ScriptedCore:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def status_message(execution_id: str, state: int = pb.EXECUTION_RUNNING, **fields: Any) -> pb.ExecutionStatus:
    """An ExecutionStatus message with sensible defaults for the fields not given."""
    message = pb.ExecutionStatus(
        execution_id=execution_id,
        workflow_name=fields.pop("workflow_name", "orders"),
        status=state,
        total_steps=fields.pop("total_steps", 4),
        current_step_index=fields.pop("current_step_index", 1),
        current_step_name=fields.pop("current_step_name", "charge"),
        **fields,
    )
    if not message.HasField("started_at"):
        message.started_at.FromSeconds(1_700_000_000)
    return message


def not_found_message(execution_id: str) -> pb.ExecutionStatus:
    """What the real Core answers (gRPC OK) about an id it does not know."""
    return pb.ExecutionStatus(
        execution_id=execution_id,
        workflow_name="unknown",
        status=pb.EXECUTION_STATE_UNSPECIFIED,
        error=pb.ErrorInfo(kind="not_found", message=f"Execution {execution_id} not found"),
    )


def paged(executions: Callable[[], list[pb.ExecutionStatus]]) -> Callable[[pb.ListExecutionsRequest], Any]:
    """A ListExecutions answer that pages ``executions()`` (re-read on every call) like Core."""

    def answer(request: pb.ListExecutionsRequest) -> pb.ListExecutionsResponse:
        everything = executions()
        limit = request.limit if request.limit > 0 else 50
        page = everything[request.offset : request.offset + min(limit, 100)]
        return pb.ListExecutionsResponse(
            executions=page,
            total_count=len(everything),
            has_more=request.offset + len(page) < len(everything),
        )

    return answer
