"""The gRPC face of the emulator: Core's five client RPCs with its quirks; worker RPCs refused.

Every call first goes through the fault gate (``faults.Faults.gate``), so an injected failure
changes nothing. The answers follow ../shared/core-contract.md point by point, and the real
release's bugs (``bugs.RealCoreBugs``) when they are switched on.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import grpc
from google.protobuf import json_format

from cerebelum_provider.emulator import render
from cerebelum_provider.emulator.bugs import INTERNAL_SERVER_ERROR, RealCoreBugs
from cerebelum_provider.emulator.engine import Engine
from cerebelum_provider.emulator.events import Phase
from cerebelum_provider.emulator.faults import Faults
from cerebelum_provider.proto import worker_service_pb2 as pb
from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
_PHASES_BY_WIRE_VALUE = {pb.ExecutionState.Value(phase.value): phase for phase in Phase}


class CoreServicer(pb_grpc.WorkerServiceServicer):
    """WorkerService as the real Core answers clients.

    ``engine`` is a callable so that a restarted emulator (a new engine on the same file) is picked
    up without rebuilding the server.
    """

    def __init__(
        self,
        engine: Callable[[], Engine],
        faults: Faults,
        *,
        list_broken: Callable[[], bool],
        bugs: Callable[[], RealCoreBugs] = RealCoreBugs,
    ) -> None:
        self._engine = engine
        self._faults = faults
        self._list_broken = list_broken
        self._bugs = bugs
        self._statuses = render.StatusCache()

    # Client RPCs -----------------------------------------------------------------------------

    async def GetExecutionStatus(self, request, context):
        await self._faults.gate("GetExecutionStatus", context)
        engine = self._engine()
        projection = engine.get(request.execution_id)
        if projection is None:
            return render.not_found(request.execution_id)
        if self._bugs().status_crash:
            await context.abort(grpc.StatusCode.UNKNOWN, INTERNAL_SERVER_ERROR)
        return self._statuses.status(projection, engine.now())

    async def ListExecutions(self, request, context):
        await self._faults.gate("ListExecutions", context)
        try:
            answer = self._list(request)
        except Exception:
            # Core answers OK with an empty list when its query fails.
            log.exception("ListExecutions failed; answering an empty list as Core does")
            return pb.ListExecutionsResponse()
        if answer.executions and self._bugs().status_crash:
            await context.abort(grpc.StatusCode.UNKNOWN, INTERNAL_SERVER_ERROR)
        return answer

    async def ResumeExecution(self, request, context):
        await self._faults.gate("ResumeExecution", context)
        engine = self._engine()
        outcome, _ = engine.resume_outcome(request.execution_id, self._bugs().resume_without_effect)
        handle = pb.ExecutionHandle(execution_id=request.execution_id, status=outcome)
        if outcome == "resumed":
            handle.started_at.CopyFrom(render.timestamp(engine.now()))
        return handle

    async def ExecuteWorkflow(self, request, context):
        await self._faults.gate("ExecuteWorkflow", context)
        engine = self._engine()
        name = request.workflow_module
        if not name or engine.timeline(name) is None:
            return pb.ExecutionHandle(execution_id=engine.next_error_handle(), status="failed")
        inputs = json_format.MessageToDict(request.inputs) if request.HasField("inputs") else {}
        # options.execution_id is ignored, as by Core: it always picks the id itself.
        execution_id = engine.start_execution(name, inputs, plan=engine.rpc_plan(name))
        projection = engine.get(execution_id)
        assert projection is not None
        return pb.ExecutionHandle(
            execution_id=execution_id, status="running", started_at=render.timestamp(projection.started_at)
        )

    async def SubmitBlueprint(self, request, context):
        await self._faults.gate("SubmitBlueprint", context)
        names = [step.name for step in request.definition.timeline]
        errors = []
        if not request.workflow_module:
            errors.append("workflow_module is required")
        if not names:
            errors.append("definition.timeline has no steps")
        if any(not name for name in names):
            errors.append("every step needs a name")
        duplicates = sorted({name for name in names if name and names.count(name) > 1})
        if duplicates:
            errors.append(f"duplicate step names: {', '.join(duplicates)}")
        if errors:
            return pb.BlueprintValidation(valid=False, errors=errors)
        self._engine().define_workflow(request.workflow_module, names)
        digest = hashlib.sha256("\n".join([request.workflow_module, *names]).encode()).hexdigest()
        return pb.BlueprintValidation(valid=True, workflow_hash=digest)

    # Worker RPCs: the emulator plays Core for clients only -------------------------------------

    async def Register(self, request, context):
        await self._unimplemented("Register", context)

    async def Heartbeat(self, request, context):
        await self._unimplemented("Heartbeat", context)

    async def Unregister(self, request, context):
        await self._unimplemented("Unregister", context)

    async def PollForTask(self, request, context):
        await self._unimplemented("PollForTask", context)

    async def SubmitResult(self, request, context):
        await self._unimplemented("SubmitResult", context)

    # Internals -------------------------------------------------------------------------------

    async def _unimplemented(self, rpc: str, context: grpc.aio.ServicerContext) -> None:
        await self._faults.gate(rpc, context)
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, f"{rpc} is a worker RPC; the emulator serves clients only"
        )

    def _list(self, request: pb.ListExecutionsRequest) -> pb.ListExecutionsResponse:
        if self._list_broken():
            raise RuntimeError("injected internal error in ListExecutions")
        limit = request.limit
        if limit <= 0:
            limit = DEFAULT_LIMIT
        limit = min(limit, MAX_LIMIT)
        offset = max(request.offset, 0)
        # Presence, not truthiness: a workflow_name of "" filters for the name "".
        workflow_name = request.workflow_name if request.HasField("workflow_name") else None
        phase = None
        if request.HasField("status") and request.status != pb.EXECUTION_STATE_UNSPECIFIED:
            phase = _PHASES_BY_WIRE_VALUE.get(request.status)
            if phase is None:
                # PAUSED (or a value Core does not know): nothing is ever in that state.
                return pb.ListExecutionsResponse()
        engine = self._engine()
        page, total = engine.list(workflow_name, phase, limit, offset)
        now = engine.now()
        return pb.ListExecutionsResponse(
            executions=[self._statuses.status(projection, now) for projection in page],
            total_count=total,
            has_more=offset + len(page) < total,
        )
