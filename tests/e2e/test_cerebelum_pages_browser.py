"""The Cerebelum pages in a real Airflow api-server, driven in headless Chromium with a real login.

The shared stack (conftest.py) has the login on: an ``admin`` and a ``viewer`` whose auth manager
lets them read connections but not edit them (tests/e2e/ui_auth_manager.py: SimpleAuthManager
itself has no such role). Its ``cerebelum_pages`` connections point at a Core emulator of their
own whose executions only move when told (one step an hour, an hour's sleep): two of each state,
so the dashboard's counts can be compared with what Core itself lists. The admin opens the page from
Airflow's navigation, resumes a FAILED execution, stops a running one and approves a waiting one,
each checked in the emulator afterwards; the viewer sees no buttons, and a POST of theirs answers
403 with the execution unchanged. Bad input gets an error page, never a trace. Screenshots of each
page go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from cerebelum_provider import ExecutionState, SyncExecutionClient
from cerebelum_provider.exceptions import ExecutionNotFoundError
from tests.browser import log_in, wait_for

from .conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

#: Executions per state in conftest.PAGES_SCENARIO, as Core counts them.
EXPECTED_COUNTS = {
    "RUNNING": 2,
    "SLEEPING": 1,
    "WAITING_FOR_APPROVAL": 2,
    "FAILED": 2,
    "COMPLETED": 2,
    "PAUSED": 0,
}
PAGES = "/cerebelum/connections/cerebelum_pages"


def shot(browser, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"cerebelum-{name}.png"))


def text_of(browser, selector: str) -> str:
    from selenium.webdriver.common.by import By

    return wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, selector), what=selector)[0].text


def act(browser, base_url: str, execution_id: str, action: str, response: str | None = None) -> str:
    """Open the execution's page, press the action's button, confirm; return the outcome shown."""
    from selenium.webdriver.common.by import By

    browser.get(f"{base_url}{PAGES}/executions/{execution_id}")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f"[data-action={action}]"), what=action)[0].click()
    if response is not None:
        field = wait_for(lambda: browser.find_elements(By.NAME, "response"), what="the response field")[0]
        field.clear()
        field.send_keys(response)
    shot(browser, f"confirm-{action}")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f"[data-confirm={action}]"), what="Yes")[0].click()
    outcome = text_of(browser, "[data-test=outcome]")
    shot(browser, f"after-{action}")
    return outcome


def test_pages_show_core_and_act_only_for_who_may_edit(browser, airflow, pages_core):
    from selenium.webdriver.common.by import By

    base = airflow.base_url
    core = SyncExecutionClient(pages_core.address)  # gRPC: another road to the same executions

    # Loaded once, with no plugin import error (a second load of the same name would be one).
    plugins = airflow.request("GET", "/api/v2/plugins")["plugins"]
    assert [plugin["name"] for plugin in plugins].count("cerebelum") == 1
    errors = airflow.request("GET", "/api/v2/plugins/importErrors")["import_errors"]
    assert not [error for error in errors if "cerebelum" in json.dumps(error).lower()], errors

    # Anonymous: sent to Airflow's login (a page), refused (a POST), never shown data.
    anonymous = httpx.get(f"{base}{PAGES}/", timeout=60)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/auth/login?next=")
    assert "ui-" not in anonymous.text
    anonymous = httpx.post(f"{base}{PAGES}/executions/ui-failed-2/resume", timeout=60)
    assert anonymous.status_code == 401 and "Log in" in anonymous.text
    assert "data-state" not in anonymous.text and "carrier" not in anonymous.text  # no state, no error

    log_in(browser, base, "admin", airflow.passwords["admin"], "/plugin/cerebelum")
    # In Airflow's navigation: the entry's page shows the plugin's page in Airflow's frame.
    browser.get(f"{base}/plugin/cerebelum")
    frame = wait_for(lambda: browser.find_elements(By.TAG_NAME, "iframe"), what="the Cerebelum frame")[0]
    wait_for(lambda: browser.find_elements(By.XPATH, "//a[normalize-space()='Cerebelum']"), what="the nav entry")
    browser.switch_to.frame(frame)
    wait_for(lambda: browser.find_elements(By.PARTIAL_LINK_TEXT, "cerebelum_pages"), what="the selector")
    browser.switch_to.default_content()
    shot(browser, "in-airflow-nav")

    browser.get(f"{base}/cerebelum/")
    links = {link.text for link in browser.find_elements(By.CSS_SELECTOR, "a.card")}
    assert {"cerebelum_default", "cerebelum_pages", "cerebelum_pages_grpc", "cerebelum_down"} <= links
    assert "not_cerebelum" not in links
    shot(browser, "connections")

    browser.get(f"{base}{PAGES}/")
    shown = {
        element.get_attribute("data-count-state"): int(element.find_element(By.CLASS_NAME, "number").text)
        for element in wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "[data-count-state]"), what="counts")
    }
    listed = {name: core.list_executions(status=name, limit=1)[1] for name in EXPECTED_COUNTS}
    assert shown == listed == EXPECTED_COUNTS
    active = browser.find_element(By.TAG_NAME, "table").text
    assert "ui-running-1" in active and "ui-sleeping" in active and "charge" in active
    shot(browser, "dashboard")

    browser.get(f"{base}{PAGES}/executions?state=FAILED")
    assert text_of(browser, "[data-test=total]").startswith("2 executions")
    browser.find_element(By.LINK_TEXT, "ui-failed-1").click()
    wait_for(lambda: "carrier API answered 503" in browser.page_source, what="the execution's error")
    assert '"order_id": 7' in text_of(browser, "[data-test=inputs]")
    assert "ExecutionStartedEvent" in browser.page_source  # the event log, over HTTP
    # Numbered and with a status although Core's REST status gives only the outputs (the event log has them).
    steps = browser.find_elements(By.CSS_SELECTOR, "[data-test=steps] tbody tr")
    shown_steps = [[cell.text for cell in step.find_elements(By.TAG_NAME, "td")][:3] for step in steps]
    assert shown_steps == [["1", "validate", "completed"], ["2", "charge", "completed"]], shown_steps
    shot(browser, "execution-failed")

    outcome = act(browser, base, "ui-failed-1", "resume")
    assert outcome == "Resume: Core answered 'resumed'; the execution is RUNNING now", outcome
    assert core.get_execution_status("ui-failed-1").status is ExecutionState.RUNNING

    outcome = act(browser, base, "ui-running-1", "stop")
    assert outcome.startswith("Stop: Core answered 'stopped'"), outcome
    with pytest.raises(ExecutionNotFoundError):  # Core has no process left for it to stop
        SyncExecutionClient(pages_core.http_url).stop_execution("ui-running-1")

    outcome = act(browser, base, "ui-approval-1", "approve", response='{"approved_by": "admin"}')
    assert outcome == "Approve: Core answered 'approved'; the execution is RUNNING now", outcome
    assert core.get_execution_status("ui-approval-1").status is ExecutionState.RUNNING

    # Over gRPC the page says what the connection lacks, and offers no Approve button.
    browser.get(f"{base}/cerebelum/connections/cerebelum_pages_grpc/executions/ui-approval-2")
    actions = text_of(browser, "[data-test=actions]")
    assert "Approve needs Core's HTTP API" in actions and "api=http" in actions
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-action=approve]")
    shot(browser, "execution-grpc")

    # A POST another site made the admin's browser send is refused, the execution unchanged.
    admin_cookie = {"_token": browser.get_cookie("_token")["value"]}
    cross_site = httpx.post(
        f"{base}{PAGES}/executions/ui-failed-2/resume",
        cookies=admin_cookie,
        headers={"Sec-Fetch-Site": "cross-site"},
        timeout=60,
    )
    assert cross_site.status_code == 403
    no_token = httpx.post(f"{base}{PAGES}/executions/ui-failed-2/resume", cookies=admin_cookie, timeout=60)
    assert no_token.status_code == 403 and "did not come from this page" in no_token.text

    # An approval's response that is not a JSON object is refused before anything reaches Core.
    form = httpx.get(f"{base}{PAGES}/executions/ui-approval-2/approve", cookies=admin_cookie, timeout=60)
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form.text).group(1)
    bad = httpx.post(
        f"{base}{PAGES}/executions/ui-approval-2/approve",
        cookies=admin_cookie,
        data={"csrf_token": token, "response": "[1, 2]"},
        timeout=60,
    )
    assert bad.status_code == 400 and "response '[1, 2]' is not a JSON object" in bad.text.replace("&#39;", "'")
    assert core.get_execution_status("ui-approval-2").status is ExecutionState.WAITING_FOR_APPROVAL

    # Bad input: a page that says what is wrong, never a trace.
    for path, status, words in (
        ("/cerebelum/connections/nope/", 404, "Airflow has no connection 'nope'"),
        ("/cerebelum/connections/not_cerebelum/", 400, "is of type 'http': expected a connection of type"),
        (f"{PAGES}/executions/no-such-execution", 404, "knows no execution 'no-such-execution'"),
        ("/cerebelum/connections/cerebelum_down/", 503, "did not answer counting the RUNNING executions"),
        (f"{PAGES}/executions?state=DONE", 400, "state='DONE' is not an execution state"),
    ):
        answer = httpx.get(f"{base}{path}", cookies=admin_cookie, timeout=120)
        assert answer.status_code == status, (path, answer.status_code, answer.text[-500:])
        assert words in answer.text.replace("&#39;", "'"), (path, answer.text[-800:])
        assert "Traceback" not in answer.text
    browser.get(f"{base}/cerebelum/connections/cerebelum_down/")
    shot(browser, "error-core-down")

    # A viewer reads, without buttons; their POST is refused and changes nothing.
    log_in(browser, base, "viewer", airflow.passwords["viewer"], "/cerebelum/")
    browser.get(f"{base}{PAGES}/executions/ui-failed-2")
    assert "need edit access to the connection" in text_of(browser, "[data-test=actions]")
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-action]")
    shot(browser, "execution-viewer")
    viewer_cookie = {"_token": browser.get_cookie("_token")["value"]}
    for action in ("resume", "approve", "stop"):
        refused = httpx.post(f"{base}{PAGES}/executions/ui-failed-2/{action}", cookies=viewer_cookie, timeout=60)
        assert refused.status_code == 403, (action, refused.text[-300:])
    assert httpx.get(f"{base}{PAGES}/executions/ui-failed-2/resume", cookies=viewer_cookie).status_code == 403
    assert core.get_execution_status("ui-failed-2").status is ExecutionState.FAILED
    assert core.get_execution_status("ui-approval-2").status is ExecutionState.WAITING_FOR_APPROVAL
