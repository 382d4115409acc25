"""The bearer token never leaves the connection: not in logs, XCom, templates, triggers, errors or repr().

One DAG with every Cerebelum task type (tests/reliability/dags/cerebelum_secrets_dag.py) runs
through ``dag.test()`` against a token-protected emulator; then everything the run produced is
searched for the token: the captured output and log records, every file under AIRFLOW_HOME
(task logs and the metadata database, which holds XCom, rendered template fields and trigger
rows) and the XCom values read back. The token is fresh per run, so an earlier run cannot
leave it behind, and each search is shown to be able to fail (it finds the execution ids).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cerebelum_provider.client import ExecutionClient, RetryConfig, SyncExecutionClient
from cerebelum_provider.exceptions import CerebelumAuthError
from cerebelum_provider.hooks.cerebelum import CerebelumHook
from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger

pytestmark = pytest.mark.timeout(180)

STEP_SECONDS = 0.05


def _fresh_token() -> str:
    return f"tok-{uuid.uuid4().hex}"


def _files_containing(root: Path, needle: str) -> list[str]:
    """Every file under ``root``, and the metadata database wherever Airflow keeps it (with its WAL),
    whose bytes hold ``needle``."""
    from airflow import settings

    database = Path(settings.engine.url.database or "")
    paths = {path for path in root.rglob("*") if path.is_file()}
    paths |= {path for path in database.parent.glob(database.name + "*") if path.is_file()}
    return sorted(str(path) for path in paths if needle.encode() in path.read_bytes())


@dataclass
class DagRunRecord:
    """One run of the every-task DAG: its outcome, the ids it used, and everything it printed."""

    run: Any
    states: dict[str, str]
    failed_id: str
    running_id: str
    nightly: list[str]
    logs: str


def _run_every_task_dag(core: Any, capfd: Any, caplog: Any) -> DagRunRecord:
    from tests.reliability.dags.cerebelum_secrets_dag import dag

    failed_id = core.start_execution("orders", fail_at="process")
    core.run_until_settled(failed_id)
    running_id = core.start_execution("orders")
    nightly = [core.start_execution("nightly", fail_at=0) for _ in range(3)]
    for execution_id in nightly:
        core.run_until_settled(execution_id)
    caplog.set_level(logging.INFO)
    capfd.readouterr()
    run = dag.test(
        run_conf={
            "failed_id": failed_id,
            "running_id": running_id,
            "workflow": "orders",
            "customer": "c-42",
            "bulk_workflow": "nightly",
        }
    )
    captured = capfd.readouterr()
    return DagRunRecord(
        run=run,
        states={ti.task_id: ti.state for ti in run.get_task_instances()},
        failed_id=failed_id,
        running_id=running_id,
        nightly=nightly,
        logs=captured.out + captured.err + caplog.text,
    )


def _persisted_rows(run: Any) -> tuple[list[Any], list[Any]]:
    """The run's XCom values and rendered template fields, as stored in the metadata database."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = session.query(XComModel).filter(XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id)
        rendered = session.query(RenderedTaskInstanceFields).filter(
            RenderedTaskInstanceFields.dag_id == run.dag_id, RenderedTaskInstanceFields.run_id == run.run_id
        )
        return (
            [(row.task_id, row.key, row.value) for row in xcoms],
            [(row.task_id, row.rendered_fields) for row in rendered],
        )


@pytest.mark.slow
def test_token_never_appears_across_a_whole_dag_run(migrated_airflow_db, core_factory, set_connection, capfd, caplog):
    from airflow.sdk._shared.secrets_masker.secrets_masker import redact
    from airflow.utils.state import DagRunState, TaskInstanceState

    token = _fresh_token()
    core = core_factory(token=token, step_seconds=STEP_SECONDS)
    set_connection(core.address, token=token)

    record = _run_every_task_dag(core, capfd, caplog)

    assert record.run.state == DagRunState.SUCCESS, record.states
    assert set(record.states.values()) == {TaskInstanceState.SUCCESS}
    assert core.resume_count(record.failed_id) == 1
    assert [core.resume_count(execution_id) for execution_id in record.nightly] == [1, 1, 1]
    # The search can fail: the task logs of the run are there (the operators' own lines).
    assert f"Cerebelum execution {record.failed_id}: Core answered 'resumed' to the resume" in record.logs
    assert "Bulk resume of workflow 'nightly' done" in record.logs and record.running_id in record.logs
    assert token not in record.logs
    # Reading the connection made Airflow's masker learn its password: any log line would hide it.
    assert redact(f"Bearer {token}") == "Bearer ***"

    home = Path(os.environ["AIRFLOW_HOME"])
    from airflow import settings

    assert _files_containing(home, record.failed_id), (
        f"the metadata database ({settings.engine.url}) should hold this run"
    )
    assert _files_containing(home, token) == []

    xcoms, rendered = _persisted_rows(record.run)
    assert {task_id for task_id, _, _ in xcoms} >= {"resume", "wait_deferred", "wait_poke", "start", "bulk"}
    assert {task_id for task_id, _ in rendered} >= {"resume", "wait_deferred", "wait_poke", "start", "bulk"}
    persisted = json.dumps([xcoms, rendered], default=str)
    assert record.failed_id in persisted and "c-42" in persisted  # rendered ids and inputs are there
    assert token not in persisted


@pytest.mark.slow
def test_refused_token_fails_the_run_without_showing_either_token(
    migrated_airflow_db, core_factory, set_connection, capfd, caplog
):
    from airflow.utils.state import DagRunState, TaskInstanceState

    right, wrong = _fresh_token(), _fresh_token()
    core = core_factory(token=right, step_seconds=STEP_SECONDS)
    set_connection(core.address, token=wrong)

    record = _run_every_task_dag(core, capfd, caplog)

    assert record.run.state == DagRunState.FAILED
    assert record.states["resume"] == TaskInstanceState.FAILED
    assert core.call_counts() == {"ResumeExecution": 1}  # refused once, never retried
    assert core.resume_count(record.failed_id) == 0
    assert "refused ResumeExecution" in record.logs and core.address in record.logs
    assert right not in record.logs and wrong not in record.logs
    home = Path(os.environ["AIRFLOW_HOME"])
    assert _files_containing(home, right) == [] and _files_containing(home, wrong) == []


def test_serialized_trigger_kwargs_hold_no_token(core, set_connection):
    token = _fresh_token()
    conn_id = set_connection(core.address, token=token)
    trigger = CerebelumExecutionTrigger("exec-1", cerebelum_conn_id=conn_id, poll_interval=1)
    classpath, kwargs = trigger.serialize()
    assert kwargs["cerebelum_conn_id"] == conn_id
    assert token not in json.dumps(kwargs) and token not in repr(trigger)
    assert CerebelumExecutionTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_repr_of_hook_settings_and_clients_hold_no_token(core, set_connection):
    token = _fresh_token()
    conn_id = set_connection(core.address, token=token)
    hook = CerebelumHook(conn_id)
    settings = hook.get_settings()
    assert settings.token == token  # the token is really there, only never shown
    sync_client = hook.get_client()
    async_client = ExecutionClient(**settings.client_kwargs())
    try:
        shown = [repr(hook), repr(settings), repr(sync_client), repr(async_client), str(hook.describe_settings(settings))]
        assert all(token not in text for text in shown), shown
        assert "token=***" in repr(sync_client)
    finally:
        sync_client.close()


def test_airflow_connection_password_is_masked_by_airflow():
    """The token lives in the connection's password, a field Airflow's masker always hides."""
    from airflow.sdk._shared.secrets_masker.secrets_masker import redact, should_hide_value_for_key
    from airflow.sdk.log import mask_secret

    from cerebelum_provider.get_provider_info import CONNECTION_FIELDS, get_provider_info

    token = _fresh_token()
    assert should_hide_value_for_key("password")
    mask_secret(token)  # what Airflow does with every connection's password when a task reads it
    assert token not in str(redact(f"Bearer {token}"))
    behaviour = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
    assert "password" not in behaviour["hidden-fields"]
    assert behaviour["relabeling"]["password"] == "Bearer token"
    # The one extra that may carry a secret, a pasted client key, has a name Airflow's masker hides
    # wherever it shows extras; every TLS field is a password field in the form.
    secret_fields = {name for name in CONNECTION_FIELDS if should_hide_value_for_key(name)}
    assert secret_fields == {"client_private_key_pem"}
    for name in ("client_key", "ca_cert_pem", "client_cert_pem", "client_private_key_pem"):
        assert CONNECTION_FIELDS[name]["schema"].get("format") == "password", name
    key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"
    assert key not in str(redact({"client_private_key_pem": key}))


@pytest.mark.parametrize("client_class", [ExecutionClient, SyncExecutionClient])
def test_wrong_token_fails_after_one_call_and_the_error_names_neither_token(core_factory, client_class):
    right, wrong = _fresh_token(), _fresh_token()
    core = core_factory(token=right)
    execution_id = core.start_execution("orders")
    retry = RetryConfig(max_attempts=5, initial_backoff=0.001, max_backoff=0.002)

    async def ask(token: str):
        client = client_class(core.address, token=token, retry=retry, timeout=5)
        try:
            if client_class is ExecutionClient:
                return await client.get_execution_status(execution_id)
            return await asyncio.to_thread(client.get_execution_status, execution_id)
        finally:
            result = client.close()
            if asyncio.iscoroutine(result):
                await result

    assert asyncio.run(ask(right)).execution_id == execution_id
    assert core.call_counts() == {"GetExecutionStatus": 1}
    with pytest.raises(CerebelumAuthError) as caught:
        asyncio.run(ask(wrong))
    assert core.call_counts() == {"GetExecutionStatus": 2}  # refused once, never retried
    text = f"{caught.value} {caught.value!r} {caught.value.__dict__}"
    assert core.address in str(caught.value)
    assert right not in text and wrong not in text


def test_connection_test_with_wrong_token_names_neither_token(core_factory, set_connection):
    right, wrong = _fresh_token(), _fresh_token()
    core = core_factory(token=right)
    ok, message = CerebelumHook(set_connection(core.address, token=wrong)).test_connection()
    assert not ok and core.address in message
    assert right not in message and wrong not in message
    ok, message = CerebelumHook(set_connection(core.address, token=right, conn_id="cerebelum_right")).test_connection()
    assert ok, message
