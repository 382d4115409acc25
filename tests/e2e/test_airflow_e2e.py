"""The provider in a real Airflow: scheduler, dag-processor, triggerer and api-server processes.

``dag.test()`` runs everything in one process; only here does a real scheduler hand a deferred
sensor to a real triggerer process, and the api-server draw the connection form from the
provider info and run the connection test through the hook.
"""

from __future__ import annotations

import sqlite3
from collections import Counter

import pytest

from cerebelum_provider import ExecutionState, SyncExecutionClient
from cerebelum_provider.get_provider_info import CONNECTION_FIELDS

from .conftest import NIGHTLY_FAILED, NIGHTLY_WORKFLOW, SLOW_WORKFLOW

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRIGGER_CLASSPATH = "cerebelum_provider.triggers.cerebelum.CerebelumExecutionTrigger"


def resume_counts(core_db) -> Counter:
    """How many times the emulator resumed each execution, read from its event log file."""
    with sqlite3.connect(f"file:{core_db}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT execution_id FROM events WHERE type = 'execution_resumed'").fetchall()
    return Counter(execution_id for (execution_id,) in rows)


def test_hook_meta_lists_cerebelum_with_its_extra_fields(airflow):
    hooks = airflow.request("GET", "/ui/connections/hook_meta")
    cerebelum = [hook for hook in hooks if hook["connection_type"] == "cerebelum"]

    assert len(cerebelum) == 1
    assert cerebelum[0]["hook_name"] == "Cerebelum Core"
    extra_fields = cerebelum[0]["extra_fields"]
    assert set(extra_fields) == set(CONNECTION_FIELDS)
    for name, field in CONNECTION_FIELDS.items():
        assert extra_fields[name]["schema"]["title"] == field["label"]
        assert extra_fields[name]["description"] == field["description"]
    standard = cerebelum[0]["standard_fields"]
    assert standard["password"]["title"] == "Bearer token"
    assert standard["login"]["hidden"] is True


def test_connection_test_answers_true_for_the_emulator(airflow, emulator):
    host, port = emulator.address.rsplit(":", 1)
    body = {"connection_id": "e2e_probe", "conn_type": "cerebelum", "host": host, "port": int(port)}

    answer = airflow.request("POST", "/api/v2/connections/test", json=body)

    assert answer["status"] is True
    assert emulator.address in answer["message"]


def test_connection_test_answers_false_with_the_address_for_a_closed_port(airflow):
    from airflow_stack import closed_port

    port = closed_port()
    body = {"connection_id": "e2e_closed", "conn_type": "cerebelum", "host": "127.0.0.1", "port": port}

    answer = airflow.request("POST", "/api/v2/connections/test", json=body)

    assert answer["status"] is False
    assert f"127.0.0.1:{port}" in answer["message"]
    assert "CoreUnavailableError" in answer["message"]
