"""The Cerebelum execution page's "Completed steps" table, rendered from what the emulator answers.

The page's template is rendered in process with the data its route reads from Core
(``execution_data``); tests/e2e/test_cerebelum_pages_browser.py drives the same page in a real
api-server. Over gRPC Core's status lists the completed steps; over REST (be56c90) it gives only
their outputs, keyed by name, and the event log's ``StepExecutedEvent`` rows give their order.
"""

from __future__ import annotations

import re

import pytest

from tests.core_apis import connection_uri

STEPS = ["validate", "charge", "ship", "notify"]


def steps_table(core, execution_id: str, monkeypatch) -> list[list[str]]:
    """The rows of the rendered page's steps table, as the text of their cells."""
    from cerebelum_provider.plugins import ui

    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core))
    connection = ui.cerebelum_connection("cerebelum_default")
    data = ui.execution_data(connection, execution_id)
    html = ui._templates.get_template("execution.html").render(
        url=lambda name, **params: f"/{name}",
        static="/cerebelum.css",
        connection=connection,
        can_act=False,
        actions=ui.available_actions(data["execution"]),
        labels=ui.ACTIONS,
        http_only=ui.HTTP_ONLY_ACTIONS,
        http_only_message=ui.http_only_message,
        outcome=None,
        **data,
    )
    table = re.search(r'<table data-test="steps">(.*?)</table>', html, re.DOTALL)
    assert table, html
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1), re.DOTALL)
    cells = [re.findall(r"<t[hd]>(.*?)</t[hd]>", row, re.DOTALL) for row in rows]
    return [[re.sub(r"<[^>]+>", "", cell).strip() for cell in row] for row in cells]


# The page reads the steps from the status over gRPC and from the event log over REST.
@pytest.mark.apis("grpc", "http")
def test_the_completed_steps_show_their_number_and_status(core, monkeypatch):
    core.define_workflow("orders", STEPS)
    execution_id = core.start_execution("orders", fail_at="ship")
    core.run_until_settled(execution_id)

    rows = steps_table(core, execution_id, monkeypatch)

    assert [row[:3] for row in rows] == [
        ["#", "Step", "Status"],
        ["1", "validate", "completed"],
        ["2", "charge", "completed"],
    ]
    assert all(row[3] for row in rows[1:])  # each with its output
