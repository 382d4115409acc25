"""The Cerebelum pages: a FastAPI app that Airflow's api-server mounts at ``/cerebelum``.

Server-rendered HTML (Jinja2, which Airflow ships) and one CSS file: nothing to build, nothing
loaded from the internet. Every page asks Core through ``CerebelumHook``, so the connection's
token stays in the api-server. Access follows Airflow's auth manager: a page needs read access
(GET) to the connection, an action (resume, stop, approve) edit access (PUT); an action is a POST
that carries a token tied to the user's session and is refused when the browser says it came from
another site.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_connection
from airflow.sdk import conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from cerebelum_provider._arguments import check_conn_id, check_execution_id
from cerebelum_provider.bulk import DEFAULT_RESUME_CHECK_GRACE
from cerebelum_provider.client import CoreAPI, RetryConfig, SyncExecutionClient
from cerebelum_provider.client._rest_convert import completed_steps_from_events
from cerebelum_provider.exceptions import CerebelumError, CoreUnavailableError, ExecutionNotFoundError
from cerebelum_provider.hooks.cerebelum import CerebelumHook, describe_core_failure
from cerebelum_provider.models import ExecutionState, ExecutionStatus
from cerebelum_provider.operators._common import ALREADY_COMPLETED, resume_checked

log = logging.getLogger(__name__)

T = TypeVar("T")

HERE = Path(__file__).resolve().parent
#: The connection type whose connections get pages.
CONN_TYPE = "cerebelum"
#: The dashboard's counts, in this order.
DASHBOARD_STATES = (
    ExecutionState.RUNNING,
    ExecutionState.SLEEPING,
    ExecutionState.WAITING_FOR_APPROVAL,
    ExecutionState.FAILED,
    ExecutionState.COMPLETED,
    ExecutionState.PAUSED,
)
#: The states whose executions the dashboard lists under "Active".
ACTIVE_STATES = (ExecutionState.RUNNING, ExecutionState.SLEEPING, ExecutionState.WAITING_FOR_APPROVAL)
#: Most active executions the dashboard shows (each costs one status read).
ACTIVE_SHOWN = 10
#: Executions per page of the list.
PAGE_SIZE = 50
#: The actions, each with its button label; stop and approve need Core's HTTP API.
ACTIONS = {"resume": "Resume", "stop": "Stop", "approve": "Approve"}
HTTP_ONLY_ACTIONS = ("stop", "approve")
#: A page read tries once: the reader reloads, nobody waits out a retry budget for a page.
PAGE_RETRY = RetryConfig(max_attempts=1)
CSRF_FIELD = "csrf_token"
#: Airflow's session cookie (the JWT the UI logs in with).
SESSION_COOKIE = "_token"

_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(), trim_blocks=True
)
_templates.filters["tojson_pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True, default=str)


class PageError(Exception):
    """A request the pages answer with an error page: ``status`` and one clear sentence."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


@dataclass(frozen=True)
class CoreConnection:
    """One Cerebelum connection as a page uses it: its id, its hook and settings, what it can do."""

    conn_id: str
    hook: CerebelumHook

    @property
    def api(self) -> str:
        return self.hook.get_settings().api

    @property
    def address(self) -> str:
        return self.hook.get_settings().address

    def client(self, *, page: bool = True) -> SyncExecutionClient:
        """A client; a page's tries once, an action's has the connection's retry budget."""
        settings = self.hook.get_settings()
        retry = PAGE_RETRY if page else settings.retry_config()
        return SyncExecutionClient(**settings.client_kwargs(), retry=retry)

    def failure(self, step: str, error: Exception) -> PageError:
        """The page for a call to Core that failed while ``step``, with what to change."""
        if isinstance(error, ExecutionNotFoundError):
            return PageError(404, "Unknown execution", error.message)
        status = 503 if isinstance(error, CoreUnavailableError) else 502
        return PageError(
            status, "Cerebelum Core failed", describe_core_failure(self.hook.get_settings(), step, error)
        )


def cerebelum_connection(connection_id: str) -> CoreConnection:
    """The Cerebelum connection ``connection_id``, checked.

    Raises:
        PageError: not a valid id (400), no such connection (404), an ``AIRFLOW_CONN_*`` variable
            Airflow cannot read, a connection of another type or an invalid one (400).
    """
    try:
        conn_id = check_conn_id(connection_id)
    except (TypeError, ValueError) as error:
        raise PageError(400, "Bad connection id", str(error)) from None
    hook = CerebelumHook(conn_id)
    try:
        connection = hook.get_connection(conn_id)
    except AirflowNotFoundException:
        variable = f"AIRFLOW_CONN_{conn_id.upper()}"
        if variable in os.environ:  # Airflow skips a variable it cannot parse: "not defined"
            raise PageError(
                400,
                "Invalid connection",
                f"Airflow could not read connection {conn_id!r} from {variable}: expected a connection "
                f"URI ({CONN_TYPE}://host:port) or JSON",
            ) from None
        raise PageError(
            404,
            "Unknown connection",
            f"Airflow has no connection {conn_id!r}: expected the id of a connection of type {CONN_TYPE!r}",
        ) from None
    if connection.conn_type != CONN_TYPE:
        raise PageError(
            400,
            "Not a Cerebelum connection",
            f"Connection {conn_id!r} is of type {connection.conn_type!r}: expected a connection of type "
            f"{CONN_TYPE!r} (Cerebelum Core)",
        )
    try:
        hook.get_settings()
    except ValueError as error:
        raise PageError(400, "Invalid Cerebelum connection", str(error)) from None
    return CoreConnection(conn_id, hook)


def checked_execution_id(execution_id: str) -> str:
    """The execution id of a page's address, checked as the client checks it.

    Raises:
        PageError: 400 naming the id when it is blank or too long.
    """
    try:
        return check_execution_id(execution_id)
    except ValueError as error:
        raise PageError(400, "Bad execution id", str(error)) from None


def _connection_type_of(value: str) -> str | None:
    """The type of a connection given as an ``AIRFLOW_CONN_*`` value (a URI or JSON)."""
    if value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed.get("conn_type") if isinstance(parsed, dict) else None
    return urlsplit(value).scheme.replace("-", "_") or None


def cerebelum_connection_ids() -> list[str]:
    """The ids of the Cerebelum connections in Airflow's database and in ``AIRFLOW_CONN_*``
    variables (other secrets backends cannot be listed: open their pages by id)."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ids = set(session.scalars(select(Connection.conn_id).where(Connection.conn_type == CONN_TYPE)))
    for key, value in os.environ.items():
        if key.startswith("AIRFLOW_CONN_") and _connection_type_of(value) == CONN_TYPE:
            ids.add(key.removeprefix("AIRFLOW_CONN_").lower())
    return sorted(ids)


def may(user: Any, method: str, conn_id: str) -> bool:
    """Whether the auth manager lets ``user`` use ``method`` (GET: read, PUT: edit) on ``conn_id``."""
    return get_auth_manager().is_authorized_connection(
        method=method,  # type: ignore[arg-type]
        details=ConnectionDetails(conn_id=conn_id),
        user=user,
    )


def csrf_token(request: Request, user: Any) -> str:
    """The form token of this user's session: an HMAC of the user and the session cookie under
    Airflow's ``[api] secret_key``, so a page of another site cannot know it."""
    secret = conf.get("api", "secret_key", fallback="") or ""
    session = request.cookies.get(SESSION_COOKIE, "")
    message = f"cerebelum-pages\0{user.get_id()}\0{session}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def check_same_site(request: Request, user: Any, form_token: object) -> None:
    """Refuse a POST that another site may have sent on the user's behalf.

    A request with an ``Authorization`` header carries its credential itself (no browser adds one
    on its own), so only cookie-authenticated requests need the form token.

    Raises:
        PageError: 403 when the browser says it came from another site, or the token is wrong.
    """
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise PageError(
            403, "Refused", "This action was sent from another site: open the page and use it there"
        )
    if request.headers.get("authorization"):
        return
    if not isinstance(form_token, str) or not hmac.compare_digest(form_token, csrf_token(request, user)):
        raise PageError(
            403,
            "Refused",
            "This form has expired or did not come from this page: reload the page and try again",
        )


def _url(request: Request, name: str, **params: str) -> str:
    # This app's own routes (request.url_for would search the api-server's), under its mount path.
    return request.scope.get("root_path", "") + request.app.url_path_for(name, **params)


def _render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("connection", None)
    html = _templates.get_template(template).render(
        request=request,
        url=lambda name, **params: _url(request, name, **params),
        static=_url(request, "static", path="cerebelum.css"),
        **context,
    )
    return HTMLResponse(html, status_code=status)


async def _core(call: Callable[[], T]) -> T:
    """Run blocking client work off the event loop."""
    return await run_in_threadpool(call)


# Page data --------------------------------------------------------------------------------------


def dashboard_data(connection: CoreConnection) -> dict[str, Any]:
    """The counts per state (one list call each, read from its total) and the first active
    executions with their current step and progress (one status read each)."""
    counts: dict[str, int] = {}
    listed: list[ExecutionStatus] = []
    notices: list[str] = []
    with connection.client() as client:
        for state in DASHBOARD_STATES:
            active = state in ACTIVE_STATES
            limit = max(1, ACTIVE_SHOWN - len(listed)) if active else 1
            try:
                executions, total, _ = client.list_executions(status=state, limit=limit)
            except CerebelumError as error:
                raise connection.failure(f"counting the {state.name} executions", error) from None
            counts[state.name] = total
            if active:
                listed += executions[: ACTIVE_SHOWN - len(listed)]
        rows: list[dict[str, ExecutionStatus | None]] = []
        for execution in listed:
            try:
                rows.append(
                    {"listed": execution, "status": client.get_execution_status(execution.execution_id)}
                )
            except CerebelumError as error:
                rows.append({"listed": execution, "status": None})
                notices.append(
                    describe_core_failure(
                        connection.hook.get_settings(), f"reading execution {execution.execution_id!r}", error
                    )
                )
    return {"counts": counts, "active": rows, "notices": notices[:1]}


def list_page_data(
    connection: CoreConnection, workflow: str, status: ExecutionState | None, page: int
) -> tuple[list[ExecutionStatus], int, bool]:
    """One page of the list: one list call, whatever the number of executions."""
    with connection.client() as client:
        try:
            return client.list_executions(
                workflow_name=workflow.strip() or None,
                status=status,
                limit=PAGE_SIZE,
                offset=(page - 1) * PAGE_SIZE,
            )
        except CerebelumError as error:
            raise connection.failure("listing executions", error) from None


def execution_data(connection: CoreConnection, execution_id: str) -> dict[str, Any]:
    """The execution's status, its completed steps and, over Core's HTTP API, its event log (where
    the steps' order comes from: Core's REST status gives only their outputs)."""
    with connection.client() as client:
        try:
            execution = client.get_execution_status(execution_id)
        except CerebelumError as error:
            raise connection.failure(f"reading execution {execution_id!r}", error) from None
        events: list[dict[str, Any]] | None = None
        events_problem = None
        if client.api is CoreAPI.HTTP:
            try:
                events = client.get_execution_events(execution_id)
            except CerebelumError as error:
                events_problem = f"Core did not give the event log: {error.message}"
        else:
            events_problem = (
                "The event log needs Core's HTTP API, which this connection does not use: set the "
                "connection's Core API to http (api=http) and its port to Core's HTTP port"
            )
    started = _start_event_data(events)
    return {
        "execution": execution,
        "workflow": execution.workflow_name
        or started.get("blueprint_name")
        or started.get("workflow_name")
        or "",
        "inputs": execution.inputs or started.get("inputs") or {},
        "steps": execution.completed_steps or completed_steps_from_events(events or []),
        "events": events,
        "events_problem": events_problem,
    }


def _start_event_data(events: list[dict[str, Any]] | None) -> dict[str, Any]:
    # Core's REST status names no workflow and holds no inputs; the execution's start event has both.
    for event in events or []:
        data = event.get("data")
        if event.get("type") == "ExecutionStartedEvent" and isinstance(data, dict):
            return data
    return {}


def available_actions(execution: ExecutionStatus) -> list[str]:
    """The actions that make sense for the execution's state, whatever the connection's API."""
    actions = []
    if execution.status is not ExecutionState.COMPLETED:
        actions.append("resume")
    if execution.status in ACTIVE_STATES:
        actions.append("stop")
    if execution.status is ExecutionState.WAITING_FOR_APPROVAL:
        actions.append("approve")
    return actions


@dataclass(frozen=True)
class ActionOutcome:
    """What an action did, in words, and whether it did what was asked."""

    done: bool
    message: str


def run_action(
    connection: CoreConnection, execution_id: str, action: str, response: dict[str, Any] | None
) -> ActionOutcome:
    """Do ``action`` on the execution and say what Core answered and the state it is in afterwards."""
    with connection.client(page=False) as client:
        if action in HTTP_ONLY_ACTIONS and client.api is not CoreAPI.HTTP:
            return ActionOutcome(False, http_only_message(action))
        try:
            if action == "resume":
                outcome = resume_checked(
                    client,
                    execution_id,
                    skip_completed_steps=True,
                    grace=DEFAULT_RESUME_CHECK_GRACE,
                    log=log,
                )
                answer = (
                    "it was already COMPLETED: nothing was resumed"
                    if outcome.answer == ALREADY_COMPLETED
                    else f"Core answered {outcome.answer!r}"
                )
            elif action == "stop":
                answer = f"Core answered {client.stop_execution(execution_id)!r}"
            else:
                answer = f"Core answered {client.approve_execution(execution_id, response)!r}"
        except AirflowFailException as error:
            return ActionOutcome(False, f"Not resumed: {error}")
        except AirflowException as error:  # Core answered; reading the execution back did not work
            return ActionOutcome(False, f"Resume: {error}")
        except CerebelumError as error:
            return ActionOutcome(False, f"{ACTIONS[action]} failed: {error.message}")
        try:
            state = client.get_execution_status(execution_id).status.name
        except CerebelumError as error:
            return ActionOutcome(
                True, f"{ACTIONS[action]}: {answer}; reading its state afterwards failed: {error.message}"
            )
    after = f"{ACTIONS[action]}: {answer}; the execution is {state} now"
    if action == "stop":
        after += " (Core ends its process and records no event: its state stays as it was)"
    return ActionOutcome(True, after)


def http_only_message(action: str) -> str:
    return (
        f"{ACTIONS[action]} needs Core's HTTP API, which this connection does not use: set the connection's "
        "Core API to http (api=http) and its port to Core's HTTP port"
    )


def parse_response(text: object) -> dict[str, Any] | None:
    """The approval's response from the form: empty, or a JSON object.

    Raises:
        PageError: 400 naming the text when it is not a JSON object.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if not isinstance(text, str):
        raise PageError(400, "Bad response", "The approval's response must be text holding a JSON object")
    try:
        value = json.loads(text)
    except ValueError as error:
        raise PageError(
            400,
            "Bad response",
            f"The approval's response {text!r} is not JSON ({error}): expected a JSON object",
        ) from None
    if not isinstance(value, dict):
        raise PageError(
            400, "Bad response", f"The approval's response {text!r} is not a JSON object: expected {{...}}"
        )
    return value


# The app ----------------------------------------------------------------------------------------


def create_app() -> FastAPI:
    """The pages' app; ``CerebelumPlugin`` builds it on the api-server's first request to it."""
    app = FastAPI(title="Cerebelum", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    can_read = [Depends(requires_access_connection("GET"))]
    can_edit = [Depends(requires_access_connection("PUT"))]

    @app.exception_handler(PageError)
    async def page_error(request: Request, error: PageError) -> Response:
        return _render(request, "error.html", error.status, title=error.title, message=error.message)

    # Starlette's, which FastAPI's subclasses: a wrong address or method gets a page too, not JSON.
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        if error.status_code == 401:
            if request.method == "GET":  # a person opening a page: Airflow's login, then back here
                return RedirectResponse(_login_url(request), status_code=303)
            return _render(
                request,
                "error.html",
                401,
                title="Log in",
                message="Log in to Airflow to see Cerebelum.",
                login_url=_login_url(request),
            )
        if error.status_code == 403:
            connection_id = request.path_params.get("connection_id", "")
            need = "edit" if request.method == "POST" or "action" in request.path_params else "read"
            message = f"You need {need} access to the Airflow connection {connection_id!r} for this page."
            return _render(request, "error.html", 403, title="Forbidden", message=message)
        message = f"{error.detail}: {request.url.path}"
        return _render(request, "error.html", error.status_code, title="Error", message=message)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return _render(request, "error.html", 400, title="Bad request", message=problems)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        log.exception("Cerebelum page %s failed", request.url.path)
        message = f"The page failed: {type(error).__name__}: {error}. The api-server's log has the details."
        return _render(request, "error.html", 500, title="Error", message=message)

    @app.get("/", name="index")
    async def index(request: Request, user: GetUserDep, connection_id: str | None = None) -> Response:
        if connection_id:
            return RedirectResponse(_url(request, "dashboard", connection_id=connection_id), status_code=303)
        ids = await _core(cerebelum_connection_ids)
        readable = [conn_id for conn_id in ids if may(user, "GET", conn_id)]
        if len(readable) == 1:
            return RedirectResponse(_url(request, "dashboard", connection_id=readable[0]), status_code=303)
        return _render(request, "index.html", connection_ids=readable, hidden=len(ids) - len(readable))

    @app.get("/connections/{connection_id}/", name="dashboard", dependencies=can_read)
    async def dashboard(request: Request, connection_id: str, user: GetUserDep) -> Response:
        connection = await _core(lambda: cerebelum_connection(connection_id))
        data = await _core(lambda: dashboard_data(connection))
        return _render(request, "dashboard.html", **_page_context(user, connection), **data)

    @app.get("/connections/{connection_id}/executions", name="executions", dependencies=can_read)
    async def executions(
        request: Request,
        connection_id: str,
        user: GetUserDep,
        workflow: str = "",
        state: str = "",
        page: int = 1,
    ) -> Response:
        connection = await _core(lambda: cerebelum_connection(connection_id))
        try:
            status = ExecutionState.coerce(state, field_name="state") if state else None
        except ValueError as error:
            raise PageError(400, "Bad filter", str(error)) from None
        if page < 1:
            raise PageError(400, "Bad page", f"page={page} is not a page number: expected 1 or more")

        rows, total, has_more = await _core(lambda: list_page_data(connection, workflow, status, page))
        return _render(
            request,
            "executions.html",
            **_page_context(user, connection),
            rows=rows,
            total=total,
            has_more=has_more,
            page=page,
            pages=max(1, -(-total // PAGE_SIZE)),
            workflow=workflow,
            state_filter=status.name if status else "",
            states=[s.name for s in DASHBOARD_STATES],
        )

    @app.get(
        "/connections/{connection_id}/executions/{execution_id}", name="execution", dependencies=can_read
    )
    async def execution(
        request: Request, connection_id: str, execution_id: str, user: GetUserDep
    ) -> Response:
        checked_execution_id(execution_id)
        return await _execution_page(request, user, connection_id, execution_id)

    @app.get(
        "/connections/{connection_id}/executions/{execution_id}/{action}",
        name="confirm",
        dependencies=can_edit,
    )
    async def confirm(
        request: Request, connection_id: str, execution_id: str, action: str, user: GetUserDep
    ) -> Response:
        _check_action(action)
        checked_execution_id(execution_id)
        connection = await _core(lambda: cerebelum_connection(connection_id))
        return _render(
            request,
            "confirm.html",
            **_page_context(user, connection),
            execution_id=execution_id,
            action=action,
            label=ACTIONS[action],
            csrf=csrf_token(request, user),
            unsupported=http_only_message(action)
            if action in HTTP_ONLY_ACTIONS and connection.api != "http"
            else None,
        )

    @app.post(
        "/connections/{connection_id}/executions/{execution_id}/{action}", name="act", dependencies=can_edit
    )
    async def act(
        request: Request, connection_id: str, execution_id: str, action: str, user: GetUserDep
    ) -> Response:
        _check_action(action)
        checked_execution_id(execution_id)
        form = await request.form()
        check_same_site(request, user, form.get(CSRF_FIELD))
        response = parse_response(form.get("response")) if action == "approve" else None
        connection = await _core(lambda: cerebelum_connection(connection_id))
        outcome = await _core(lambda: run_action(connection, execution_id, action, response))
        log.info(
            "Cerebelum page: user %s, %s of execution %s on connection %r: %s",
            user.get_name(),
            action,
            execution_id,
            connection_id,
            outcome.message,
        )
        return await _execution_page(request, user, connection_id, execution_id, outcome=outcome)

    return app


def _check_action(action: str) -> None:
    if action not in ACTIONS:
        raise PageError(
            404, "Unknown action", f"{action!r} is not an action: expected one of {', '.join(ACTIONS)}"
        )


def _page_context(user: Any, connection: CoreConnection) -> dict[str, Any]:
    return {
        "connection": connection,
        "can_act": may(user, "PUT", connection.conn_id),
        "user_name": user.get_name(),
    }


async def _execution_page(
    request: Request, user: Any, connection_id: str, execution_id: str, outcome: ActionOutcome | None = None
) -> Response:
    connection = await _core(lambda: cerebelum_connection(connection_id))
    data = await _core(lambda: execution_data(connection, execution_id))
    return _render(
        request,
        "execution.html",
        **_page_context(user, connection),
        **data,
        actions=available_actions(data["execution"]),
        labels=ACTIONS,
        http_only=HTTP_ONLY_ACTIONS,
        http_only_message=http_only_message,
        outcome=outcome,
    )


def _login_url(request: Request) -> str:
    """Airflow's login page, back to this page afterwards (Airflow 3.2's SimpleAuthManager leaves
    ``next`` out of its login URL: it is added here)."""
    back = str(request.url)
    try:
        url = get_auth_manager().get_url_login(next_url=back)
    except Exception:  # noqa: BLE001 (a login link is a courtesy: Airflow's root page logs in too)
        url = "/"
    if "next=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode({'next': back})}"
