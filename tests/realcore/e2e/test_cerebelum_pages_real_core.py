"""The Cerebelum pages in Airflow's UI on the real Core (release be56c90), in headless Chromium.

A completed, a failed and a waiting execution of the harness's workflows are shown with their
states; the waiting one is approved from its page and completes; the failed one's Resume is
reported as not taken: this release answers a resume of a FAILED execution without running it
again, and the page reads the execution back instead of believing the answer. Screenshots go to
``test-artifacts/``.
"""

from __future__ import annotations

import httpx
import pytest
from airflow_stack import AirflowStack
from real_core import RealCore

from tests.browser import wait_for

from .conftest import REPO

pytestmark = [
    pytest.mark.realcore,
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(300),
]

RELEASE = "be56c90"
SCREENSHOTS = REPO / "test-artifacts"
PAGES = "/cerebelum/connections/cerebelum_default"


def shot(browser, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"cerebelum-real-core-{name}.png"))


def open_execution(browser, base_url: str, execution_id: str) -> str:
    """Open the execution's page; return the state it shows."""
    from selenium.webdriver.common.by import By

    browser.get(f"{base_url}{PAGES}/executions/{execution_id}")
    return wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".facts [data-state]"), what="the state")[
        0
    ].get_attribute("data-state")


def confirm(browser, action: str, response: str | None = None) -> str:
    """Press the action's button on the open execution page, confirm; return the outcome shown."""
    from selenium.webdriver.common.by import By

    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f"[data-action={action}]"), what=action)[0].click()
    if response is not None:
        field = wait_for(lambda: browser.find_elements(By.NAME, "response"), what="the response field")[0]
        field.clear()
        field.send_keys(response)
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f"[data-confirm={action}]"), what="Yes")[0].click()
    return wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "[data-test=outcome]"), what="outcome")[0].text


def test_pages_show_real_executions_approve_one_and_say_the_failed_one_was_not_resumed(
    browser, realcore_airflow: AirflowStack, real_core: RealCore
):
    from selenium.webdriver.common.by import By

    assert real_core.release == RELEASE, f"this test pins what Core {RELEASE} does; here: {real_core.release}"
    completed, failed, waiting = (real_core.start_execution(name) for name in ("rc_ok", "rc_fail", "rc_ask"))
    real_core.wait_for_state(completed, ("completed",))
    real_core.wait_for_state(failed, ("failed",))
    real_core.wait_for_state(waiting, ("waiting_for_approval",))
    real_core.wait_for_event(completed, "ExecutionCompletedEvent")

    base = realcore_airflow.base_url
    # Every caller is an admin in this stack: the page sends the browser to Airflow's login, which
    # logs it in at once and sends it back.
    browser.get(f"{base}{PAGES}/")
    counts = {
        element.get_attribute("data-count-state"): int(element.find_element(By.CLASS_NAME, "number").text)
        for element in wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "[data-count-state]"), what="counts")
    }
    # Other modules share this Core: at least the three started here.
    assert counts["COMPLETED"] >= 1 and counts["FAILED"] >= 1 and counts["WAITING_FOR_APPROVAL"] >= 1, counts
    assert real_core.token not in browser.page_source  # the connection's token stays in the api-server
    shot(browser, "dashboard")

    assert open_execution(browser, base, completed) == "COMPLETED"
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-action]")  # nothing to do for it
    assert "ExecutionCompletedEvent" in browser.page_source
    shot(browser, "completed")

    assert open_execution(browser, base, waiting) == "WAITING_FOR_APPROVAL"
    outcome = confirm(browser, "approve", response='{"approved": true, "by": "the Cerebelum page"}')
    assert outcome.startswith("Approve: Core answered 'approved'"), outcome
    real_core.wait_for_state(waiting, ("completed",))
    shot(browser, "approved")

    assert open_execution(browser, base, failed) == "FAILED"
    outcome = confirm(browser, "resume")
    assert outcome.startswith("Not resumed:") and "still FAILED" in outcome, outcome
    state = browser.find_element(By.CSS_SELECTOR, ".facts [data-state]").get_attribute("data-state")
    assert state == "FAILED"
    assert real_core.execution(failed)["state"] == "failed"
    shot(browser, "resume-not-taken")

    # Over gRPC this release fails every status read of an existing execution: the page says so and
    # names the fix, the connection's API.
    grpc_host, grpc_port = real_core.grpc_target.rsplit(":", 1)
    connection = {
        "connection_id": "rc_pages_grpc",
        "conn_type": "cerebelum",
        "host": grpc_host,
        "port": int(grpc_port),
        "extra": '{"api": "grpc"}',
    }
    realcore_airflow.request("POST", "/api/v2/connections", json=connection, expect=(201,))
    answer = httpx.get(
        f"{base}/cerebelum/connections/rc_pages_grpc/executions/{completed}",
        cookies={cookie["name"]: cookie["value"] for cookie in browser.get_cookies()},  # the browser's session
        timeout=120,
    )
    assert answer.status_code == 502, answer.text[-500:]
    assert "as the released Cores do" in answer.text and "set Core API to http (api=http)" in answer.text
    assert "Traceback" not in answer.text
