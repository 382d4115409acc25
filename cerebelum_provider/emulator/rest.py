"""The REST face of the emulator: Core's Phoenix JSON API, answered from the same engine as gRPC.

Routes, JSON shapes, status codes and the token check follow Core's router, ``ExecutionController``
and ``JWTAuth`` plug (../shared/real-core/README.md, REST table). ``/health`` and
``GET /api/v1/workflows`` are open and never faulted; every ``/api/v1/executions`` call goes through
the same fault gate as gRPC (counted under the equivalent RPC's name) and needs
``Authorization: Bearer <token>`` when the emulator has a token. An injected fault becomes the HTTP
answer a proxy or Core would give (:data:`HTTP_STATUS_FOR_CODE`).

:class:`RestServer` serves the app with uvicorn's HTTP/1.1 protocol on an asyncio server of the
emulator's own loop, so it starts and stops in milliseconds and never touches signal handlers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cerebelum_provider.emulator import core_view
from cerebelum_provider.emulator.bugs import RealCoreBugs
from cerebelum_provider.emulator.engine import Engine
from cerebelum_provider.emulator.events import Phase
from cerebelum_provider.emulator.faults import Faults

log = logging.getLogger(__name__)

#: The HTTP status an injected gRPC fault code becomes; any other code is a 500.
HTTP_STATUS_FOR_CODE = {
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
}
#: Seconds an injected 429 asks the client to wait (Core's rate limiter says 60; tests cannot wait
#: that long); a refusal of the emulator's rate limit says its window's length, as Core does.
RETRY_AFTER_SECONDS = 1
#: Core's rate limit per organisation and minute, echoed in its 429 body.
_RATE_LIMIT = 1000

# Phoenix's bodies for the errors its own machinery answers (ErrorJSON).
_PHOENIX_500 = {"errors": {"detail": "Internal Server Error"}}
_PHOENIX_400 = {"errors": {"detail": "Bad Request"}}
_PHOENIX_404 = {"errors": {"detail": "Not Found"}}
# Elixir's String.to_integer accepts an optional sign and digits, nothing else.
_ELIXIR_INTEGER = re.compile(r"[+-]?[0-9]+")


class _BadJSON(Exception):
    """A request body Phoenix's JSON parser refuses (it answers 400)."""


def fault_response(
    code: grpc.StatusCode, message: str, rate_limit: tuple[int, int] | None = None
) -> JSONResponse:
    """The HTTP answer for an injected fault ``code``; a 429 echoes ``rate_limit`` ``(limit,
    retry-after seconds)`` when the emulator's rate limit is set."""
    status = HTTP_STATUS_FOR_CODE.get(code, 500)
    if status == 401:
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    if status == 429:
        limit, retry_after = rate_limit or (_RATE_LIMIT, RETRY_AFTER_SECONDS)
        headers = {"retry-after": str(retry_after), "x-ratelimit-remaining": "0"}
        return JSONResponse({"error": "rate_limit_exceeded", "limit": limit}, 429, headers=headers)
    if status == 500:
        return JSONResponse(_PHOENIX_500, status_code=500)
    return JSONResponse({"error": code.name.lower(), "message": message}, status_code=status)


class CoreRestApp:
    """The Starlette app; ``engine`` and ``bugs`` are callables so a restarted emulator is picked up."""

    def __init__(
        self, engine: Callable[[], Engine], faults: Faults, bugs: Callable[[], RealCoreBugs]
    ) -> None:
        self._engine = engine
        self._faults = faults
        self._bugs = bugs
        executions = "/api/v1/executions"
        routes = [
            Route("/health", self._health, methods=["GET"]),
            Route("/api/v1/workflows", self._workflows, methods=["GET"]),
            Route(executions, self._gated("ListExecutions", self._list), methods=["GET"]),
            Route(executions, self._gated("ExecuteWorkflow", self._create), methods=["POST"]),
            Route(executions + "/{id}", self._gated("GetExecutionStatus", self._show), methods=["GET"]),
            Route(
                executions + "/{id}/events", self._gated("GetExecutionEvents", self._events), methods=["GET"]
            ),
            Route(executions + "/{id}/stop", self._gated("StopExecution", self._stop), methods=["POST"]),
            Route(
                executions + "/{id}/resume", self._gated("ResumeExecution", self._resume), methods=["POST"]
            ),
            Route(
                executions + "/{id}/approve", self._gated("ApproveExecution", self._approve), methods=["POST"]
            ),
        ]
        not_found = self._not_found
        self.app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})

    # The gate --------------------------------------------------------------------------------

    def _gated(
        self, rpc: str, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            client = request.client
            peer = f"{request.url.scheme}://{client.host}:{client.port}" if client else request.url.scheme
            failure = await self._faults.admit(
                rpc, peer, request.headers.get("authorization", ""), rate_limited=True
            )
            if failure is not None:
                return fault_response(*failure, rate_limit=self._faults.rate_limit)
            if rpc == "GetExecutionStatus" and self._faults.engine_busy_now():
                # Core's status read asks every engine in turn and exits on one busy past 5 s.
                return JSONResponse(_PHOENIX_500, status_code=500)
            try:
                return await handler(request)
            except _BadJSON:
                return JSONResponse(_PHOENIX_400, status_code=400)
            except Exception:
                log.exception("the emulator's REST %s handler failed", rpc)
                return JSONResponse(_PHOENIX_500, status_code=500)

        return endpoint

    @staticmethod
    async def _not_found(request: Request, exc: Exception) -> Response:
        # Phoenix answers 404 for an unknown path and for a known path with another method.
        return JSONResponse(_PHOENIX_404, status_code=404)

    # Open routes -----------------------------------------------------------------------------

    async def _health(self, request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                "version": "0.1.0",
                "services": {"database": "ok", "grpc": "running"},
            }
        )

    async def _workflows(self, request: Request) -> Response:
        workflows = self._engine().defined_workflows()
        return JSONResponse(
            {
                "data": [
                    {
                        "id": name,
                        "label": name,
                        "version": "0.1.0",
                        "steps": list(steps),
                        "language": "python",
                    }
                    for name, steps in sorted(workflows.items())
                ]
            }
        )

    # Executions ------------------------------------------------------------------------------

    async def _list(self, request: Request) -> Response:
        params = request.query_params
        limit_text, offset_text = params.get("limit", "50"), params.get("offset", "0")
        if not (_ELIXIR_INTEGER.fullmatch(limit_text) and _ELIXIR_INTEGER.fullmatch(offset_text)):
            # Core's String.to_integer raises on anything else: Phoenix answers 500.
            return JSONResponse(_PHOENIX_500, status_code=500)
        limit, offset = min(int(limit_text), 100), max(int(offset_text), 0)
        engine = self._engine()
        # Any status word is accepted; one Core does not know matches no execution.
        matches = engine.core_list(params.get("workflow"), params.get("status"))
        rest = matches[offset:]
        # Elixir's Enum.take with a negative count takes from the end.
        page = rest[:limit] if limit >= 0 else rest[limit:]
        summaries = []
        for execution_id in page:
            rows = core_view.core_events(execution_id, engine.events_of(execution_id))
            summaries.append(core_view.summary(execution_id, rows))
        return JSONResponse({"executions": summaries, "total": len(matches)})

    async def _show(self, request: Request) -> Response:
        execution_id = request.path_params["id"]
        engine = self._engine()
        projection = engine.get(execution_id)
        if projection is None:
            return JSONResponse(
                {"error": "not_found", "message": f"Execution {execution_id} not found"}, status_code=404
            )
        rows = core_view.core_events(execution_id, engine.events_of(execution_id))
        alive = not engine.is_stopped(execution_id)
        return JSONResponse(core_view.show(projection, rows, process_alive=alive))

    async def _events(self, request: Request) -> Response:
        execution_id = request.path_params["id"]
        rows = core_view.core_events(execution_id, self._engine().events_of(execution_id))
        return JSONResponse({"execution_id": execution_id, "events": rows, "count": len(rows)})

    async def _create(self, request: Request) -> Response:
        params = await _params(request)
        name = _elixir_or(params.get("workflow"), params.get("workflow_module"))
        inputs = _elixir_or(params.get("input"), params.get("inputs"), {})
        engine = self._engine()
        if not isinstance(name, str) or not name or engine.timeline(name) is None:
            shown = "" if name is None else name if isinstance(name, str) else json.dumps(name)
            return JSONResponse(
                {"error": "workflow_not_found", "message": f"Workflow '{shown}' not registered"},
                status_code=404,
            )
        if not isinstance(inputs, dict):
            message = f"input must be a JSON object, got {json.dumps(inputs)}"
            return JSONResponse({"error": "invalid_input", "message": message}, status_code=422)
        execution_id = engine.start_execution(name, inputs, plan=engine.rpc_plan(name))
        return JSONResponse({"data": {"id": execution_id, "status": "started", "workflow": name}}, 201)

    async def _resume(self, request: Request) -> Response:
        execution_id = request.path_params["id"]
        answer, reason = self._engine().resume_outcome(execution_id, self._bugs().resume_without_effect)
        if answer == "resumed":
            return JSONResponse({"execution_id": execution_id, "status": "resumed"})
        return JSONResponse({"error": reason}, status_code=422)

    async def _stop(self, request: Request) -> Response:
        execution_id = request.path_params["id"]
        if not self._engine().stop(execution_id):
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse({"execution_id": execution_id, "status": "stopped"})

    async def _approve(self, request: Request) -> Response:
        execution_id = request.path_params["id"]
        # Phoenix hands the controller query and body parameters in one map; Core drops "id".
        response = {**dict(request.query_params), **await _params(request)}
        response.pop("id", None)
        engine = self._engine()
        projection = engine.get(execution_id)
        if projection is None or engine.is_stopped(execution_id):
            return JSONResponse({"error": ":not_found"}, status_code=422)
        if projection.phase is Phase.WAITING_FOR_APPROVAL:
            engine.approve(execution_id, response)
            return JSONResponse({"execution_id": execution_id, "status": "approved"})
        if projection.phase is Phase.FAILED:
            # A failed engine refuses with its error text, which the controller prints with inspect.
            text = core_view.show(projection, [], process_alive=True)["error"] or "execution_failed"
            return JSONResponse({"error": json.dumps(text)}, status_code=422)
        return JSONResponse({"error": ":not_waiting_for_approval"}, status_code=422)


async def _params(request: Request) -> dict[str, Any]:
    """The JSON body as Phoenix's parser gives it: an object as is, anything else under ``_json``."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except ValueError as error:
        raise _BadJSON(str(error)) from error
    return parsed if isinstance(parsed, dict) else {"_json": parsed}


def _elixir_or(*values: Any) -> Any:
    """Elixir's ``a || b``: the first value that is neither null nor false."""
    for value in values:
        if value is not None and value is not False:
            return value
    return None


class RestServer:
    """The REST app on an asyncio server of the running loop (HTTP/1.1 by uvicorn's h11 protocol)."""

    def __init__(self, app: Any, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        from uvicorn.config import Config
        from uvicorn.server import ServerState

        self._config = Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            http="h11",
            ws="none",
            proxy_headers=False,
            server_header=False,
            date_header=False,
            # Core's Cowboy keeps an idle connection for 60 s (uvicorn's default is 5 s): clients
            # see the same connection reuse against the emulator as against Core.
            timeout_keep_alive=60,
        )
        self._config.load()
        self._state = ServerState()
        self._host, self._port, self._ssl = host, port, ssl_context
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        """Bind and listen; return the port. Raises RuntimeError when the address cannot be bound."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # The protocol named explicitly: asyncio turns Nagle off only on sockets that say they are TCP,
        # and with Nagle on, a response's body waits ~40 ms for the ACK of its headers.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            sock.listen(128)
        except OSError as error:
            sock.close()
            raise RuntimeError(
                f"Cerebelum Core emulator could not listen for REST on {self._host}:{self._port}: {error}"
            ) from error
        sock.setblocking(False)
        config, state = self._config, self._state

        def protocol() -> asyncio.Protocol:
            # uvicorn types the class as a bare asyncio.Protocol; its h11 protocol takes these.
            return config.http_protocol_class(config=config, server_state=state, app_state={})  # type: ignore[call-arg]

        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(protocol, sock=sock, ssl=self._ssl)
        except BaseException:
            sock.close()
            raise
        return sock.getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, drop every connection and cancel the calls in flight (hung ones too)."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        tasks = list(self._state.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
