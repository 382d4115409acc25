"""The connection form in the Airflow UI, driven in headless Chromium, and the saved connection at work.

Users configure Cerebelum in the UI's "Add Connection" dialog. This test picks "Cerebelum Core"
there, checks the fields the provider info declares are drawn with their labels (and the unused
standard ones are not), saves a connection with only a host and a port (so it speaks Core's HTTP
API, the default), presses its "Test Connection" button and reads the answer the UI shows (it
read an execution's status over HTTP), presses the same button for a connection left at the
default API but pointed at the gRPC port (the answer names ``api=grpc``), then runs a deferrable
sensor DAG that uses the saved connection: the triggerer reads the connection that the browser
saved. The browser and its helpers are tests/browser.py's. Screenshots of the filled form are
kept in ``test-artifacts/``.
"""

from __future__ import annotations

import json

import pytest

from cerebelum_provider import ExecutionState, SyncExecutionClient
from cerebelum_provider.get_provider_info import CONNECTION_FIELDS
from tests.browser import (
    button,
    leave_the_page,
    log_in,
    open_cerebelum_form,
    press_test_and_read_the_answer,
    save_form,
    visible_labels,
    wait_for,
)

from .conftest import ARTIFACTS, SLOW_WORKFLOW

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

SCREENSHOTS = (
    ARTIFACTS / "connection-form-standard.png",
    ARTIFACTS / "connection-form-extra.png",
    ARTIFACTS / "connection-test-http.png",
    ARTIFACTS / "connection-test-grpc-port.png",
)
#: The connection id that tests/e2e/dags/e2e_ui_connection.py's sensor uses.
UI_CONNECTION_ID = "cerebelum_ui"


def test_connection_saved_in_the_ui_form_works_for_a_deferrable_sensor(browser, airflow, emulator):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    host, port = "127.0.0.1", str(emulator.http_port)
    log_in(browser, airflow.base_url, "admin", airflow.passwords["admin"], "/connections")
    dialog = open_cerebelum_form(browser, airflow.base_url, UI_CONNECTION_ID)
    host_field = dialog.find_element(By.NAME, "host")
    standard = visible_labels(dialog)
    assert {"Core host", "Core port", "Bearer token"} <= standard
    assert not {"Login", "Schema", "Host", "Port", "Password"} & standard
    host_field.send_keys(host)
    dialog.find_element(By.NAME, "port").send_keys(port)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS[0]))
    # The form is an accordion: opening "Extra Fields" folds the standard ones away.
    button(dialog, "Extra Fields").click()
    wait_for(lambda: "Use TLS" in visible_labels(dialog), what="the extra fields")
    assert {field["label"] for field in CONNECTION_FIELDS.values()} <= visible_labels(dialog)
    timeout_field = dialog.find_element(By.NAME, "element_timeout")
    timeout_field.send_keys(Keys.CONTROL, "a")
    timeout_field.send_keys("7")
    browser.save_screenshot(str(SCREENSHOTS[1]))
    save_form(browser, dialog)

    saved = airflow.request("GET", f"/api/v2/connections/{UI_CONNECTION_ID}")
    assert (saved["conn_type"], saved["host"], saved["port"]) == ("cerebelum", host, int(port))
    extra = json.loads(saved["extra"])
    assert float(extra["timeout"]) == 7
    assert extra.get("api", "http") == "http"  # untouched, the form's Core API is HTTP

    answer = press_test_and_read_the_answer(browser, UI_CONNECTION_ID, SCREENSHOTS[2])
    assert "Test Connection Successful" in answer, answer
    assert f"Connected to Cerebelum Core at {emulator.http_url} over HTTP" in answer
    assert "the status of" in answer

    grpc_host, grpc_port = emulator.address.rsplit(":", 1)
    at_grpc_port = {"connection_id": "cerebelum_ui_grpc_port", "conn_type": "cerebelum", "host": grpc_host,
                    "port": int(grpc_port)}
    airflow.request("POST", "/api/v2/connections", json=at_grpc_port, expect=(201,))
    browser.refresh()
    answer = press_test_and_read_the_answer(browser, "cerebelum_ui_grpc_port", SCREENSHOTS[3])
    assert "Test Connection Failed" in answer, answer
    assert f"answers the other API at port {grpc_port}: set Core API to grpc (api=grpc)" in answer

    leave_the_page(browser)  # the rest is Airflow's, seen over its REST API
    with SyncExecutionClient(emulator.address) as client:
        execution_id = client.execute_workflow(SLOW_WORKFLOW, {"from": "browser test"}).execution_id
    airflow.wait_for_dags(["e2e_ui_connection"])
    run_id = airflow.trigger_dag("e2e_ui_connection", conf={"execution_id": execution_id})
    result = airflow.wait_for_run("e2e_ui_connection", run_id, timeout=120)

    states = result.task_states["wait_with_ui_connection"]
    assert result.state == "success", states
    assert "deferred" in states, states  # the triggerer, too, read the connection the UI saved
    final = airflow.xcom("e2e_ui_connection", run_id, "wait_with_ui_connection")
    assert final["execution_id"] == execution_id
    assert ExecutionState.coerce(final["status"]) is ExecutionState.COMPLETED
