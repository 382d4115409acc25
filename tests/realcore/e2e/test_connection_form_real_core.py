"""The connection form in the Airflow UI, in headless Chromium, against the real Core (release be56c90).

A user adds a "Cerebelum Core" connection in the UI filling in only the host, the port and the
token, and presses "Test Connection": the answer says it read an execution's status over HTTP.
The same connection with Core API set to grpc, at Core's gRPC port, fails its Test with the fix,
``api=http``: this release reads no status of an existing execution over gRPC. Screenshots of both
answers are kept in ``test-artifacts/``.
"""

from __future__ import annotations

import json

import pytest
from airflow_stack import AirflowStack
from real_core import RealCore

from tests.browser import (
    button,
    open_cerebelum_form,
    press_test_and_read_the_answer,
    save_form,
    wait_for,
)

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
#: One of the harness's blueprints, run by its SDK worker.
WORKFLOW = "rc_ok"


def add_connection_in_the_form(
    browser, stack: AirflowStack, connection_id: str, port: int, token: str, api: str | None = None
) -> None:
    """Fill in host, port and token (and, when given, Core API among the extra fields); save."""
    from selenium.webdriver.common.by import By

    dialog = open_cerebelum_form(browser, stack.base_url, connection_id)
    dialog.find_element(By.NAME, "host").send_keys("127.0.0.1")
    dialog.find_element(By.NAME, "port").send_keys(str(port))
    dialog.find_element(By.NAME, "password").send_keys(token)
    if api:
        button(dialog, "Extra Fields").click()
        label = wait_for(
            lambda: [
                label
                for label in dialog.find_elements(By.TAG_NAME, "label")
                if label.is_displayed() and label.text.replace("*", "").strip() == "Core API"
            ],
            what="the Core API field",
        )[0]
        field = label.find_element(By.XPATH, "./ancestor::*[.//*[@role='combobox']][1]")
        field.find_element(By.CSS_SELECTOR, "[role=combobox]").click()
        wait_for(
            lambda: [
                option
                for option in browser.find_elements(By.CSS_SELECTOR, "[role=option]")
                if option.is_displayed() and option.text.strip() == api
            ],
            what=f"the Core API option {api!r}",
        )[0].click()
    save_form(browser, dialog)


def test_a_connection_made_in_the_form_tests_ok_over_http_and_names_the_fix_over_grpc(
    browser, realcore_airflow: AirflowStack, real_core: RealCore
):
    assert real_core.release == RELEASE, f"this test pins what Core {RELEASE} does; here: {real_core.release}"
    # Over gRPC this release fails only the status read of an existing execution: make one.
    real_core.wait_for_state(real_core.start_execution(WORKFLOW), ("completed",))
    SCREENSHOTS.mkdir(exist_ok=True)

    # The harness's Core listens on a free port, not on the default 4001, so the port is filled in.
    token, http_port = real_core.token, real_core.http_port
    add_connection_in_the_form(browser, realcore_airflow, "rc_form_http", http_port, token)
    saved = realcore_airflow.request("GET", "/api/v2/connections/rc_form_http")
    assert (saved["host"], saved["port"]) == ("127.0.0.1", real_core.http_port)
    assert json.loads(saved["extra"] or "{}").get("api", "http") == "http"  # untouched: the default
    answer = press_test_and_read_the_answer(
        browser, "rc_form_http", SCREENSHOTS / "connection-test-real-core-http.png"
    )
    assert "Test Connection Successful" in answer, answer
    assert f"Connected to Cerebelum Core at {real_core.http_url} over HTTP" in answer
    assert "the status of" in answer
    assert token not in answer

    grpc_port = int(real_core.grpc_target.rsplit(":", 1)[1])
    add_connection_in_the_form(browser, realcore_airflow, "rc_form_grpc", grpc_port, token, api="grpc")
    saved = realcore_airflow.request("GET", "/api/v2/connections/rc_form_grpc")
    assert json.loads(saved["extra"])["api"] == "grpc"
    answer = press_test_and_read_the_answer(
        browser, "rc_form_grpc", SCREENSHOTS / "connection-test-real-core-grpc.png"
    )
    assert "Test Connection Failed" in answer, answer
    assert "over gRPC, as the released Cores do" in answer and "set Core API to http (api=http)" in answer
    assert token not in answer
