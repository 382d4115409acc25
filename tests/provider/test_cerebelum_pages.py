"""The Cerebelum pages (``cerebelum_provider/plugins/ui.py``) served in process, logged in for real.

Airflow's own plugin mounting (``init_plugins``: the ``CerebelumPlugin`` entry point's app at
``/cerebelum``) and auth manager (``init_auth_manager``: ``/auth/token``) on one FastAPI app per
module, driven over ASGI by Starlette's ``TestClient``. The users are SimpleAuthManager's, each with
a real JWT from ``POST /auth/token`` sent as Airflow's ``_token`` session cookie: an ``admin``, a
``viewer`` who may read connections but not edit them (tests/e2e/ui_auth_manager.py) and a ``user``
who may do neither. Every page asks a real emulator over loopback, one that requires a token; no
response may hold that token. Building Airflow's whole api app (its UI, every REST route) took 20 s
of a loaded machine: the two pieces the pages need take about two.

What stays with tests/e2e/test_cerebelum_pages_browser.py: a real api-server process, Airflow's
login form and the session cookie it sets, the entry in Airflow's navigation, the one-second grace
before a resume is read back (here it is 0: the emulator's state changes when it answers), and
what a browser does with the pages' forms and links.
"""

from __future__ import annotations

import html
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from cerebelum_provider import ExecutionState, SyncExecutionClient
from cerebelum_provider._arguments import MAX_EXECUTION_ID_LENGTH
from cerebelum_provider.emulator.events import APPROVAL_GRANTED
from tests.core_apis import connection_uri

# One pytest-xdist worker builds the app once for every test here.
pytestmark = pytest.mark.xdist_group("cerebelum-pages")

TOKEN = "pages-" + secrets.token_hex(8)
STEPS = ["validate", "charge", "ship", "notify"]
PAGES = "/cerebelum/connections/cerebelum_default"
GRPC_PAGES = "/cerebelum/connections/cerebelum_grpc"
#: SimpleAuthManager's users and their roles (viewers may read connections: ui_auth_manager.py).
ROLES = {"admin": "admin", "viewer": "viewer", "user": "user"}


@dataclass
class Pages:
    """The pages' app and a client for each user (``None``: anonymous) with their session cookie."""

    app: Any
    passwords: dict[str, str]
    clients: dict[str | None, Any] = field(default_factory=dict)

    def client(self, session: str | None = None) -> Any:
        """A client of the app; with ``session`` (a JWT), as Airflow's session cookie."""
        from fastapi.testclient import TestClient

        return TestClient(
            self.app,
            base_url="http://127.0.0.1",
            raise_server_exceptions=False,
            follow_redirects=False,
            cookies={"_token": session} if session else None,
        )

    def get(self, path: str, user: str | None = "admin", **kwargs: Any) -> Any:
        return self._checked(self.clients[user].get(path, **kwargs))

    def post(self, path: str, user: str | None = "admin", **kwargs: Any) -> Any:
        return self._checked(self.clients[user].post(path, **kwargs))

    def act(self, path: str, action: str, user: str = "admin", **form: str) -> Any:
        """Open the action's confirmation page and send its form, as the "Yes" button does."""
        confirm = self.get(f"{path}/{action}", user)
        assert confirm.status_code == 200, confirm.text
        return self.post(f"{path}/{action}", user, data={"csrf_token": form_token(confirm.text), **form})

    def _checked(self, response: Any) -> Any:
        return checked(response)

    def log_in(self, user: str) -> str:
        """A new session of ``user``: a JWT from the auth manager's ``POST /auth/token``."""
        answer = self.client().post("/auth/token", json={"username": user, "password": self.passwords[user]})
        assert answer.status_code == 201, answer.text
        return answer.json()["access_token"]


def checked(response: Any) -> Any:
    # Whatever the page, the connection's token stays in the api-server, and no trace leaks out.
    assert TOKEN not in response.text
    assert "Traceback" not in response.text
    return response


def form_token(page_html: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page_html)
    assert match, page_html
    return match.group(1)


def text(response: Any) -> str:
    """The page's text as a person reads it: tags dropped, entities unescaped, spaces folded."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.text)).split())


def pager_link(response: Any, label: str) -> str:
    match = re.search(rf'<a class="button subtle" href="([^"]+)"[^>]*>[^<]*{label}', response.text)
    assert match, response.text
    return html.unescape(match.group(1))


def outcome(response: Any) -> str:
    match = re.search(r'data-test="outcome">(.*?)</p>', response.text, re.DOTALL)
    assert match, response.text
    return html.unescape(match.group(1))


@pytest.fixture(scope="module")
def pages(airflow_db: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pages]:
    from airflow.api_fastapi import app as airflow_app
    from fastapi import FastAPI

    passwords = {name: secrets.token_urlsafe(12) for name in ROLES}
    passwords_file = tmp_path_factory.mktemp("pages-auth") / "passwords.json"
    passwords_file.write_text(json.dumps(passwords))
    previous_auth_manager = airflow_app._AuthManagerState.instance
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW__CORE__AUTH_MANAGER", "tests.e2e.ui_auth_manager.ConnectionReaderAuthManager")
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ",".join(f"{n}:{r}" for n, r in ROLES.items()))
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords_file))
        env.setenv("AIRFLOW__API__SECRET_KEY", secrets.token_urlsafe(32))
        airflow_app._AuthManagerState.instance = None
        app = FastAPI()
        airflow_app.init_plugins(app)
        airflow_app.init_auth_manager(app)

        pages = Pages(app, passwords)
        pages.clients[None] = pages.client()
        for name in ROLES:
            pages.clients[name] = pages.client(pages.log_in(name))
        try:
            yield pages
        finally:
            airflow_app._AuthManagerState.instance = previous_auth_manager


@pytest.fixture
def core(core_factory):
    """An emulator that wants ``TOKEN``, with the workflow ``orders`` defined."""
    emulator = core_factory(token=TOKEN)
    emulator.define_workflow("orders", STEPS)
    return emulator


@pytest.fixture
def connections(core, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cerebelum_default`` over the test's Core API and ``cerebelum_grpc`` over gRPC, both at
    ``core`` with its token and one attempt per call (no retry waits)."""
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, token=TOKEN, max_attempts=1))
    grpc_uri = f"cerebelum://:{TOKEN}@{core.address}?api=grpc&max_attempts=1"
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_GRPC", grpc_uri)


@pytest.fixture
def no_resume_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    # The emulator's state changes as it answers the resume: nothing to wait for before reading it.
    from cerebelum_provider.plugins import ui

    monkeypatch.setattr(ui, "DEFAULT_RESUME_CHECK_GRACE", 0.0)


def started(core, execution_id: str, **plan: Any) -> str:
    """Start an ``orders`` execution and run it until it completes, fails, sleeps or waits."""
    core.start_execution("orders", execution_id=execution_id, **plan)
    core.run_until_settled(execution_id)
    return execution_id


def state_of(core, execution_id: str) -> ExecutionState:
    with SyncExecutionClient(core.http_url, token=TOKEN) as client:
        return client.get_execution_status(execution_id).status


# Who may see what --------------------------------------------------------------------------------


def test_anonymous_is_sent_to_the_login_and_shown_no_data(pages, core, connections):
    failed = started(core, "anon-failed", fail_at="ship", error_message="carrier API answered 503")

    page = pages.get(f"{PAGES}/executions/{failed}", user=None)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/auth/login?next=")
    assert "executions%2Fanon-failed" in page.headers["location"]  # back to this page afterwards

    refused = pages.post(f"{PAGES}/executions/{failed}/resume", user=None)
    assert refused.status_code == 401
    assert "Log in to Airflow to see Cerebelum." in text(refused)
    assert 'href="/auth/login?next=' in refused.text
    assert "data-state" not in refused.text and "carrier" not in refused.text  # no state, no error
    assert state_of(core, failed) is ExecutionState.FAILED


def test_a_viewer_reads_without_buttons_and_may_not_act(pages, core, connections):
    failed = started(core, "viewer-failed", fail_at="ship")
    waiting = started(core, "viewer-waiting", approval_at="ship")

    page = pages.get(f"{PAGES}/executions/{failed}", user="viewer")
    assert page.status_code == 200
    assert "need edit access to the connection" in text(page)
    assert "data-action" not in page.text

    for execution_id, action in ((failed, "resume"), (waiting, "approve"), (waiting, "stop")):
        confirm = pages.get(f"{PAGES}/executions/{execution_id}/{action}", user="viewer")
        assert confirm.status_code == 403, (action, confirm.text)
        # Access is checked before the form: no form token gets a viewer further.
        refused = pages.post(f"{PAGES}/executions/{execution_id}/{action}", user="viewer")
        assert refused.status_code == 403, (action, refused.text)
        assert "You need edit access to the Airflow connection 'cerebelum_default'" in text(refused)
    assert state_of(core, failed) is ExecutionState.FAILED
    assert state_of(core, waiting) is ExecutionState.WAITING_FOR_APPROVAL


def test_a_user_without_read_access_sees_no_connection_and_no_page(pages, core, connections):
    index = pages.get("/cerebelum/", user="user")
    assert index.status_code == 200
    assert "No Cerebelum connection that you may read (2 you may not)" in text(index)
    assert "cerebelum_default" not in index.text

    refused = pages.get(f"{PAGES}/", user="user")
    assert refused.status_code == 403
    assert "You need read access to the Airflow connection 'cerebelum_default'" in text(refused)
    assert "data-count-state" not in refused.text


# The connections ---------------------------------------------------------------------------------


def test_the_index_lists_the_cerebelum_connections_and_opens_one(pages, core, connections, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_NOT_CEREBELUM", "http://127.0.0.1:9")
    monkeypatch.setenv(
        "AIRFLOW_CONN_CEREBELUM_JSON",
        json.dumps({"conn_type": "cerebelum", "host": "127.0.0.1", "port": core.http_port}),
    )
    monkeypatch.setenv("AIRFLOW_CONN_BROKEN_JSON", "{not json")
    monkeypatch.setenv("AIRFLOW_CONN_LIST_JSON", "[1, 2]")

    index = pages.get("/cerebelum/")
    assert index.status_code == 200
    cards = re.findall(r'<a class="card" href="([^"]+)">([^<]+)</a>', index.text)
    assert cards == [
        (f"/cerebelum/connections/{conn_id}/", conn_id)
        for conn_id in ("cerebelum_default", "cerebelum_grpc", "cerebelum_json")
    ]

    opened = pages.get("/cerebelum/", params={"connection_id": "cerebelum_grpc"})
    assert (opened.status_code, opened.headers["location"]) == (303, f"{GRPC_PAGES}/")


def test_the_index_opens_the_only_connection_and_says_when_there_is_none(pages, core, monkeypatch):
    none = pages.get("/cerebelum/")
    assert none.status_code == 200
    assert "No Cerebelum connection that you may read." in text(none)

    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, token=TOKEN))
    only = pages.get("/cerebelum/")
    assert (only.status_code, only.headers["location"]) == (303, f"{PAGES}/")


@pytest.mark.parametrize(
    ("conn_id", "status", "words"),
    [
        ("nope", 404, "Airflow has no connection 'nope': expected the id of a connection of type"),
        ("not_cerebelum", 400, "Connection 'not_cerebelum' is of type 'http': expected a connection of type"),
        (
            "bad_api",
            400,
            "extra field 'api' must be 'grpc' (Core's gRPC API) or 'http' (Core's REST API), got 'soap'",
        ),
        ("%20", 400, "cerebelum_conn_id must be a non-empty string"),
    ],
)
def test_a_missing_invalid_or_other_connection_gets_a_page_that_says_why(
    pages, core, connections, monkeypatch, conn_id, status, words
):
    monkeypatch.setenv("AIRFLOW_CONN_NOT_CEREBELUM", "http://127.0.0.1:9")
    monkeypatch.setenv("AIRFLOW_CONN_BAD_API", f"cerebelum://127.0.0.1:{core.http_port}?api=soap")

    for path in ("/", "/executions", "/executions/some-id"):
        page = pages.get(f"/cerebelum/connections/{conn_id}{path}")
        assert page.status_code == status, (path, page.text)
        assert words in text(page), (path, text(page))


@pytest.mark.parametrize("value", ["cerebelum://127.0.0.1:notaport", '{"conn_type": "cerebelum", "host": '])
def test_a_connection_variable_airflow_cannot_read_gets_a_page_that_names_the_variable(
    pages, core, connections, monkeypatch, value
):
    # Airflow's secrets backends skip such a variable and answer that the connection is not defined.
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_BROKEN", value)

    page = pages.get("/cerebelum/connections/cerebelum_broken/")
    assert page.status_code == 400
    assert (
        "Airflow could not read connection 'cerebelum_broken' from AIRFLOW_CONN_CEREBELUM_BROKEN: expected a "
        "connection URI (cerebelum://host:port) or JSON" in text(page)
    )


# Dashboard and list ------------------------------------------------------------------------------


def test_the_dashboard_counts_what_core_lists_and_shows_the_active_executions(pages, core, connections):
    core.start_execution("orders", execution_id="dash-running-1")
    core.start_execution("orders", execution_id="dash-running-2")
    core.advance(1)
    started(core, "dash-sleeping", sleep_at="charge")
    started(core, "dash-waiting", approval_at="ship")
    started(core, "dash-failed", fail_at="ship")
    started(core, "dash-completed")

    page = pages.get(f"{PAGES}/")
    assert page.status_code == 200
    shown = {
        name: int(count)
        for name, count in re.findall(
            r'data-count-state="(\w+)">\s*<span class="number">(\d+)</span>', page.text
        )
    }
    with SyncExecutionClient(core.http_url, token=TOKEN) as client:
        listed = {name: client.list_executions(status=name, limit=1)[1] for name in shown}
    expected = {
        "RUNNING": 2,
        "SLEEPING": 1,
        "WAITING_FOR_APPROVAL": 1,
        "FAILED": 1,
        "COMPLETED": 1,
        "PAUSED": 0,
    }
    assert shown == listed == expected
    active = page.text.split("<h2>Active</h2>")[1]
    for execution_id in ("dash-running-1", "dash-running-2", "dash-sleeping", "dash-waiting"):
        assert f"/executions/{execution_id}" in active
    assert "dash-failed" not in active and "dash-completed" not in active
    assert "step 2/4" in active  # progress and current step, from each one's status


def test_the_dashboard_marks_an_execution_it_could_not_read_and_says_why(pages, core, connections):
    core.start_execution("orders", execution_id="dash-unread")
    core.fail_next(1, rpcs="GetExecutionStatus")

    page = pages.get(f"{PAGES}/")
    assert page.status_code == 200
    assert '<span class="muted">unreadable</span>' in page.text
    assert "did not answer reading execution 'dash-unread'" in text(page)

    calm = pages.get(f"{PAGES}/")
    assert "unreadable" not in calm.text and 'class="notice"' not in calm.text


def test_the_dashboard_says_nothing_is_active_when_nothing_is(pages, core, connections):
    started(core, "quiet-completed")

    page = pages.get(f"{GRPC_PAGES}/")
    assert page.status_code == 200
    assert "Nothing is running, sleeping or waiting for approval." in text(page)
    assert "· gRPC" in text(page)


def test_the_list_filters_by_workflow_and_state_and_pages_fifty_at_a_time(pages, core, connections):
    from cerebelum_provider.plugins.ui import PAGE_SIZE

    core.define_workflow("refunds", ["check", "pay"])
    for number in range(PAGE_SIZE + 1):
        core.start_execution("orders", execution_id=f"list-{number:03}")
    started(core, "list-failed", fail_at="ship")
    core.start_execution("refunds", execution_id="refund-1")

    first = pages.get(f"{PAGES}/executions", params={"workflow": "orders", "state": "RUNNING"})
    assert first.status_code == 200
    assert f"{PAGE_SIZE + 1} executions, page 1 of 2" in text(first)
    assert len(re.findall(r'<td><a href="[^"]+/executions/list-\d+">', first.text)) == PAGE_SIZE
    assert "Previous" not in first.text
    assert '<option value="RUNNING" selected>' in first.text

    # The pager's links keep the filters, as a browser follows them from the list's URL.
    second = pages.get(f"{PAGES}/executions{pager_link(first, 'Next')}")
    assert second.status_code == 200, text(second)
    assert f"{PAGE_SIZE + 1} executions, page 2 of 2" in text(second)
    assert re.findall(r'/executions/([\w-]+)">', second.text) == [f"list-{PAGE_SIZE:03}"]
    assert 'data-test="next"' not in second.text
    back = pages.get(f"{PAGES}/executions{pager_link(second, 'Previous')}")
    assert f"{PAGE_SIZE + 1} executions, page 1 of 2" in text(back)

    everything = pages.get(f"{PAGES}/executions")
    assert f"{PAGE_SIZE + 3} executions, page 1 of 2" in text(everything)

    failed = pages.get(f"{PAGES}/executions", params={"state": "failed"})
    assert "1 execution, page 1 of 1" in text(failed)
    assert "/executions/list-failed" in failed.text
    assert '<option value="FAILED" selected>' in failed.text

    refunds = pages.get(f"{PAGES}/executions", params={"workflow": " refunds ", "state": "RUNNING"})
    assert "1 execution, page 1 of 1" in text(refunds)
    assert "/executions/refund-1" in refunds.text

    none = pages.get(f"{PAGES}/executions", params={"workflow": "payroll"})
    assert "0 executions" in text(none) and "<table>" not in none.text


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"state": "DONE"}, "state='DONE' is not an execution state; expected one of"),
        ({"page": "0"}, "page=0 is not a page number: expected 1 or more"),
        ({"page": "two"}, "page: Input should be a valid integer"),
    ],
)
def test_a_bad_filter_gets_a_page_that_names_it(pages, core, connections, params, words):
    page = pages.get(f"{PAGES}/executions", params=params)
    assert page.status_code == 400, page.text
    assert words in text(page)


# Each execution's page ---------------------------------------------------------------------------


def test_a_failed_execution_shows_its_error_inputs_steps_events_and_resume(pages, core, connections):
    failed = started(
        core,
        "page-failed",
        inputs={"order_id": 7},
        fail_at="ship",
        error_kind="carrier_unavailable",
        error_message="carrier API answered 503",
    )

    page = pages.get(f"{PAGES}/executions/{failed}")
    assert page.status_code == 200
    shown = text(page)
    assert "carrier_unavailable : carrier API answered 503" in shown
    assert "Workflow orders" in shown
    assert '"order_id": 7' in shown
    assert "ExecutionStartedEvent" in shown and "ExecutionFailedEvent" in shown
    assert 'data-action="resume"' in page.text
    assert 'data-action="stop"' not in page.text and 'data-action="approve"' not in page.text


def test_a_sleeping_and_a_waiting_execution_say_for_how_long(pages, core, connections):
    sleeping = started(core, "page-sleeping", sleep_at="charge", sleep_ms=90_000)
    waiting = started(core, "page-waiting", approval_at="ship", approval_timeout_ms=600_000)

    # Over gRPC: Core's REST status (be56c90) says neither how long a sleep nor an approval has left.
    asleep = text(pages.get(f"{GRPC_PAGES}/executions/{sleeping}"))
    assert "State SLEEPING" in asleep and "90.0 s left of 90.0 s" in asleep

    page = pages.get(f"{GRPC_PAGES}/executions/{waiting}")
    assert "State WAITING_FOR_APPROVAL" in text(page) and "times out in 600 s" in text(page)
    over_http = pages.get(f"{PAGES}/executions/{waiting}")
    assert "State WAITING_FOR_APPROVAL" in text(over_http)
    for action in ("resume", "stop", "approve"):
        assert f'data-action="{action}"' in over_http.text


def test_over_grpc_the_page_says_what_needs_the_http_api(pages, core, connections):
    waiting = started(core, "grpc-waiting", approval_at="ship")

    page = pages.get(f"{GRPC_PAGES}/executions/{waiting}")
    assert page.status_code == 200
    shown = text(page)
    assert "The event log needs Core's HTTP API" in shown
    assert "Stop needs Core's HTTP API" in shown and "Approve needs Core's HTTP API" in shown
    assert "api=http" in shown
    assert 'data-action="resume"' in page.text and 'data-action="approve"' not in page.text
    steps = re.search(r'<table data-test="steps">(.*?)</table>', page.text, re.DOTALL)
    assert steps and "validate" in steps.group(1) and "charge" in steps.group(1)  # from gRPC's status

    confirm = pages.get(f"{GRPC_PAGES}/executions/{waiting}/approve")
    assert confirm.status_code == 200
    assert "Approve needs Core's HTTP API" in text(confirm) and '<form method="post"' not in confirm.text


def test_a_completed_execution_offers_no_action(pages, core, connections):
    completed = started(core, "page-completed")

    page = pages.get(f"{PAGES}/executions/{completed}")
    assert "State COMPLETED" in text(page) and "data-action" not in page.text


def test_an_event_log_core_did_not_give_is_said_and_the_page_still_shown(pages, core, connections):
    failed = started(core, "page-no-events", fail_at="ship")
    core.fail_next(1, rpcs="GetExecutionEvents")

    page = pages.get(f"{PAGES}/executions/{failed}")
    assert page.status_code == 200
    assert "Core did not give the event log" in text(page) and "State FAILED" in text(page)


def test_an_unknown_execution_and_an_unknown_action_get_a_404_that_names_them(pages, core, connections):
    unknown = pages.get(f"{PAGES}/executions/no-such-execution")
    assert unknown.status_code == 404
    assert "knows no execution 'no-such-execution'" in text(unknown)

    failed = started(core, "page-action", fail_at="ship")
    for answer in (
        pages.get(f"{PAGES}/executions/{failed}/rewind"),
        pages.post(f"{PAGES}/executions/{failed}/rewind"),
    ):
        assert answer.status_code == 404
        assert "'rewind' is not an action: expected one of resume, stop, approve" in text(answer)


@pytest.mark.parametrize(
    ("execution_id", "words"),
    [
        ("%20", "execution_id must be a non-empty string, got ' '"),
        (
            "x" * (MAX_EXECUTION_ID_LENGTH + 1),
            f"characters long; at most {MAX_EXECUTION_ID_LENGTH} are accepted",
        ),
    ],
)
def test_a_bad_execution_id_gets_a_400_that_says_why_before_anything_is_sent(
    pages, core, connections, execution_id, words
):
    calls_before = sum(core.call_counts().values())
    token = form_token(pages.get(f"{PAGES}/executions/x/resume").text)

    for answer in (
        pages.get(f"{PAGES}/executions/{execution_id}"),
        pages.get(f"{PAGES}/executions/{execution_id}/resume"),
        pages.post(f"{PAGES}/executions/{execution_id}/resume", data={"csrf_token": token}),
    ):
        assert answer.status_code == 400, text(answer)
        assert "Bad execution id" in text(answer) and words in text(answer)
    assert sum(core.call_counts().values()) == calls_before


def test_a_wrong_address_or_method_gets_an_error_page(pages, core, connections):
    for answer, status, words in (
        (pages.get("/cerebelum/no/such/page"), 404, "Not Found: /cerebelum/no/such/page"),
        (pages.post(f"{PAGES}/"), 405, f"Method Not Allowed: {PAGES}/"),
    ):
        assert answer.status_code == status
        assert answer.headers["content-type"].startswith("text/html")
        assert words in text(answer)


# Core down or failing ----------------------------------------------------------------------------


def test_core_down_gets_a_page_that_says_where_and_what_to_check(pages, core, connections):
    core.stop()

    for path, words in (
        ("/", "did not answer counting the RUNNING executions"),
        ("/executions", "did not answer listing executions"),
        ("/executions/some-id", "did not answer reading execution 'some-id'"),
    ):
        page = pages.get(f"{PAGES}{path}")
        assert page.status_code == 503, (path, page.text)
        assert "Cerebelum Core failed" in text(page) and words in text(page), (path, text(page))
        assert "that Core is up" in text(page)


def test_a_token_core_refuses_gets_a_502_page_that_says_which_field_to_fix(
    pages, core, connections, monkeypatch
):
    wrong = "wrong-" + secrets.token_hex(8)
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_WRONG", connection_uri(core, token=wrong, max_attempts=1))

    page = pages.get("/cerebelum/connections/cerebelum_wrong/executions")
    assert page.status_code == 502
    assert "refused the token: put a token Core accepts in the Bearer token field" in text(page)
    assert wrong not in page.text


# Actions -----------------------------------------------------------------------------------------


def test_resume_says_what_core_answered_and_the_state_after(pages, core, connections, no_resume_grace):
    failed = started(core, "act-failed", fail_at="ship")

    page = pages.act(f"{PAGES}/executions/{failed}", "resume")
    assert page.status_code == 200
    assert outcome(page) == "Resume: Core answered 'resumed'; the execution is RUNNING now"
    assert 'class="outcome ok"' in page.text
    assert state_of(core, failed) is ExecutionState.RUNNING


def test_resume_never_says_resumed_for_an_execution_that_stayed_failed(
    pages, core, connections, no_resume_grace
):
    failed = started(core, "act-stays-failed", fail_at="ship")
    core.set_resume_without_effect("resumed")

    page = pages.act(f"{PAGES}/executions/{failed}", "resume")
    assert page.status_code == 200
    said = outcome(page)
    assert said.startswith("Not resumed: ") and "FAILED" in said, said
    assert "the execution is RUNNING" not in said
    assert 'class="outcome failed"' in page.text
    assert state_of(core, failed) is ExecutionState.FAILED


def test_resume_of_a_completed_execution_says_nothing_was_resumed(pages, core, connections, no_resume_grace):
    completed = started(core, "act-completed")

    page = pages.act(f"{PAGES}/executions/{completed}", "resume")
    assert outcome(page) == (
        "Resume: it was already COMPLETED: nothing was resumed; the execution is COMPLETED now"
    )


def test_resume_whose_read_back_fails_says_core_answered_but_it_could_not_check(
    pages, core, connections, no_resume_grace
):
    failed = started(core, "act-unchecked", fail_at="ship")
    confirm = pages.get(f"{PAGES}/executions/{failed}/resume")
    core.fail_next(1, rpcs="GetExecutionStatus")

    page = pages.post(f"{PAGES}/executions/{failed}/resume", data={"csrf_token": form_token(confirm.text)})
    assert page.status_code == 200
    said = outcome(page)
    assert said.startswith("Resume: Cerebelum Core answered 'resumed'"), said
    assert "reading it back to check that it left FAILED failed" in said
    assert 'class="outcome failed"' in page.text


def test_resume_over_grpc_works_as_over_http(pages, core, connections, no_resume_grace):
    failed = started(core, "act-grpc-failed", fail_at="ship")

    page = pages.act(f"{GRPC_PAGES}/executions/{failed}", "resume")
    assert outcome(page) == "Resume: Core answered 'resumed'; the execution is RUNNING now"
    assert state_of(core, failed) is ExecutionState.RUNNING


def test_stop_says_core_ended_the_process_and_the_state_stays(pages, core, connections):
    running = core.start_execution("orders", execution_id="act-running")

    page = pages.act(f"{PAGES}/executions/{running}", "stop")
    assert outcome(page) == (
        "Stop: Core answered 'stopped'; the execution is RUNNING now (Core ends its process and records "
        "no event: its state stays as it was)"
    )
    assert core.engine.is_stopped(running)

    again = pages.act(f"{PAGES}/executions/{running}", "stop")
    assert outcome(again).startswith("Stop failed: "), outcome(again)
    assert 'class="outcome failed"' in again.text


def test_approve_passes_the_response_and_says_the_state_after(pages, core, connections):
    waiting = started(core, "act-waiting", approval_at="ship")

    page = pages.act(f"{PAGES}/executions/{waiting}", "approve", response='{"approved_by": "admin"}')
    assert outcome(page) == "Approve: Core answered 'approved'; the execution is RUNNING now"
    assert state_of(core, waiting) is ExecutionState.RUNNING
    granted = [
        event.data["response"] for event in core.engine.events_of(waiting) if event.type == APPROVAL_GRANTED
    ]
    assert granted == [{"approved_by": "admin"}]


def test_approve_with_an_empty_response(pages, core, connections):
    waiting = started(core, "act-approve-empty", approval_at="ship")

    page = pages.act(f"{PAGES}/executions/{waiting}", "approve", response=" ")
    assert outcome(page) == "Approve: Core answered 'approved'; the execution is RUNNING now"
    assert state_of(core, waiting) is ExecutionState.RUNNING


def test_an_action_whose_state_core_could_not_give_afterwards_says_what_core_answered(
    pages, core, connections
):
    running = core.start_execution("orders", execution_id="act-stop-unread")
    confirm = pages.get(f"{PAGES}/executions/{running}/stop")
    core.fail_next(1, rpcs="GetExecutionStatus")

    page = pages.post(f"{PAGES}/executions/{running}/stop", data={"csrf_token": form_token(confirm.text)})
    said = outcome(page)
    assert said.startswith("Stop: Core answered 'stopped'; reading its state afterwards failed: "), said
    assert core.engine.is_stopped(running)


@pytest.mark.parametrize(
    ("response", "words"),
    [
        ("{oops", "The approval's response '{oops' is not JSON"),
        ("[1, 2]", "The approval's response '[1, 2]' is not a JSON object: expected {...}"),
    ],
)
def test_approve_refuses_a_response_that_is_no_json_object_before_asking_core(
    pages, core, connections, response, words
):
    waiting = started(core, "act-approve-bad", approval_at="ship")

    page = pages.act(f"{PAGES}/executions/{waiting}", "approve", response=response)
    assert page.status_code == 400
    assert words in text(page)
    assert state_of(core, waiting) is ExecutionState.WAITING_FOR_APPROVAL


def test_approve_refuses_a_response_sent_as_a_file(pages, core, connections):
    waiting = started(core, "act-approve-file", approval_at="ship")
    confirm = pages.get(f"{PAGES}/executions/{waiting}/approve")

    page = pages.post(
        f"{PAGES}/executions/{waiting}/approve",
        data={"csrf_token": form_token(confirm.text)},
        files={"response": ("response.json", b"{}", "application/json")},
    )
    assert page.status_code == 400
    assert "The approval's response must be text holding a JSON object" in text(page)
    assert state_of(core, waiting) is ExecutionState.WAITING_FOR_APPROVAL


@pytest.mark.parametrize("action", ["stop", "approve"])
def test_over_grpc_stop_and_approve_say_the_connection_needs_the_http_api(pages, core, connections, action):
    waiting = started(core, f"act-grpc-{action}", approval_at="ship")
    confirm = pages.get(f"{PAGES}/executions/{waiting}/{action}")  # a form token of this session

    page = pages.post(
        f"{GRPC_PAGES}/executions/{waiting}/{action}", data={"csrf_token": form_token(confirm.text)}
    )
    assert page.status_code == 200
    said = outcome(page)
    assert said.startswith(f"{action.capitalize()} needs Core's HTTP API"), said
    assert "(api=http)" in said
    assert state_of(core, waiting) is ExecutionState.WAITING_FOR_APPROVAL
    assert not core.engine.is_stopped(waiting)


# Sent from elsewhere -----------------------------------------------------------------------------


def test_an_action_without_this_sessions_form_token_or_from_another_site_is_refused(pages, core, connections):
    failed = started(core, "csrf-failed", fail_at="ship")
    path = f"{PAGES}/executions/{failed}/resume"
    token = form_token(pages.get(path).text)  # tied to the admin's session: another one's is refused

    for form, headers, words in (
        ({}, {}, "did not come from this page"),
        ({"csrf_token": "0" * 64}, {}, "did not come from this page"),
        ({"csrf_token": token[::-1]}, {}, "has expired"),
        ({"csrf_token": token}, {"Sec-Fetch-Site": "cross-site"}, "sent from another site"),
        ({"csrf_token": token}, {"Sec-Fetch-Site": "same-site"}, "sent from another site"),
        ({}, {"Origin": "https://elsewhere.example"}, "did not come from this page"),
    ):
        refused = pages.post(path, data=form, headers=headers)
        assert refused.status_code == 403, (form, headers, refused.text)
        assert "Refused" in text(refused) and words in text(refused), (form, headers, text(refused))
    another_session = pages.client(pages.log_in("admin"))
    refused = checked(another_session.post(path, data={"csrf_token": token}))
    assert refused.status_code == 403 and "did not come from this page" in text(refused)
    assert state_of(core, failed) is ExecutionState.FAILED


def test_an_action_with_a_bearer_token_needs_no_form_token(pages, core, connections):
    # A client that sends its credential itself: no browser adds an Authorization header on its own.
    running = core.start_execution("orders", execution_id="bearer-running")
    api_client = pages.client()

    answer = checked(
        api_client.post(
            f"{PAGES}/executions/{running}/stop", headers={"Authorization": f"Bearer {pages.log_in('admin')}"}
        )
    )
    assert answer.status_code == 200
    assert outcome(answer).startswith("Stop: Core answered 'stopped'")
    assert core.engine.is_stopped(running)
