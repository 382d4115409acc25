"""Bad input refused before anything is sent: one table across every layer, counted.

Each row builds or calls something with one bad value and expects a TypeError/ValueError whose
message names the field. The emulator behind the connection holds a FAILED execution; after
each row it must have received no call at all, resumed nothing and started nothing.

The clients' own validation (every argument of every method, core_url forms, TLSConfig and
RetryConfig) is tabled in tests/client/test_client_validation.py against a scripted server; the
rows here go through the layers users touch: the connection, the hook, the sensor, the trigger
and the three operators, plus the issue's named cases through the hook's client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowFailException

from cerebelum_provider.hooks._connection import parse_connection
from cerebelum_provider.hooks.cerebelum import CerebelumHook
from cerebelum_provider.operators.cerebelum import (
    CerebelumBulkResumeOperator,
    CerebelumExecuteWorkflowOperator,
    CerebelumResumeExecutionOperator,
)
from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor
from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger

LONG_ID = "x" * 10_000


class RecordingTaskInstance:
    """Stands in for ``context["ti"]`` outside a task run: keeps what is pushed to XCom."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


@dataclass
class World:
    """What a row may use: the emulator, its FAILED execution and a way to define connections."""

    core: Any
    failed_id: str
    monkeypatch: pytest.MonkeyPatch

    def connection(self, **fields: Any) -> str:
        """Define connection ``bad`` (JSON form, any field values) pointing at the emulator's HTTP API
        (what a connection without ``api`` speaks) by default."""
        definition = {"conn_type": "cerebelum", "host": "127.0.0.1", "port": self.core.http_port, **fields}
        self.monkeypatch.setenv("AIRFLOW_CONN_BAD", json.dumps(definition))
        return "bad"

    def good_connection(self) -> str:
        return self.connection()

    def hook_client(self):
        return CerebelumHook(self.good_connection()).get_client()

    def run(self, operator: Any) -> Any:
        """Run an operator's ``execute`` with a minimal context (as after template rendering)."""
        return operator.execute({"ti": RecordingTaskInstance()})


def rendered(operator: Any, **values: Any) -> Any:
    """``operator`` with attributes set as a template would have rendered them at run time."""
    for name, value in values.items():
        setattr(operator, name, value)
    return operator


def _call(method: str, *args: Any, **kwargs: Any) -> Callable[[World], Any]:
    def call(world: World) -> Any:
        with world.hook_client() as client:
            return getattr(client, method)(*args, **kwargs)

    return call


def _hook_client(**fields: Any) -> Callable[[World], Any]:
    return lambda world: CerebelumHook(world.connection(**fields)).get_client()


def _sensor(**kwargs: Any) -> Callable[[World], Any]:
    kwargs.setdefault("execution_id", "exec-1")
    return lambda world: CerebelumExecutionSensor(task_id="wait", **kwargs)


def _trigger(**kwargs: Any) -> Callable[[World], Any]:
    kwargs.setdefault("execution_id", "exec-1")
    return lambda world: CerebelumExecutionTrigger(**kwargs)


def _resume(**kwargs: Any) -> Callable[[World], Any]:
    kwargs.setdefault("execution_id", "exec-1")
    return lambda world: CerebelumResumeExecutionOperator(task_id="resume", **kwargs)


def _bulk(**kwargs: Any) -> Callable[[World], Any]:
    return lambda world: CerebelumBulkResumeOperator(task_id="bulk", **kwargs)


def _execute(**kwargs: Any) -> Callable[[World], Any]:
    kwargs.setdefault("workflow_name", "orders")
    return lambda world: CerebelumExecuteWorkflowOperator(task_id="start", **kwargs)


def _missing_ca(world: World) -> Any:
    extra = json.dumps({"tls": True, "ca_cert": "/nonexistent/ca.pem"})
    return CerebelumHook(world.connection(extra=extra)).get_client()


def _extra(**extras: Any) -> Callable[[World], Any]:
    return _hook_client(extra=json.dumps(extras))


def _port_not_a_number(world: World) -> Any:
    return parse_connection(Connection(conn_id="bad", conn_type="cerebelum", host="core", port="ninety"))


# Run time: a templated field rendered to a bad value is refused in ``execute``, before any call.


def _sensor_run(execution_id: Any) -> Callable[[World], Any]:
    def run(world: World) -> Any:
        sensor = CerebelumExecutionSensor(
            task_id="wait", execution_id="{{ params.id }}", cerebelum_conn_id=world.good_connection()
        )
        return world.run(rendered(sensor, execution_id=execution_id))

    return run


def _resume_run(execution_id: Any) -> Callable[[World], Any]:
    def run(world: World) -> Any:
        operator = CerebelumResumeExecutionOperator(
            task_id="resume", execution_id="{{ params.id }}", cerebelum_conn_id=world.good_connection()
        )
        return world.run(rendered(operator, execution_id=execution_id))

    return run


def _bulk_run(workflow_name: Any) -> Callable[[World], Any]:
    def run(world: World) -> Any:
        operator = CerebelumBulkResumeOperator(
            task_id="bulk", workflow_name="{{ params.workflow }}", cerebelum_conn_id=world.good_connection()
        )
        return world.run(rendered(operator, workflow_name=workflow_name))

    return run


def _execute_run(workflow_name: Any) -> Callable[[World], Any]:
    def run(world: World) -> Any:
        operator = CerebelumExecuteWorkflowOperator(
            task_id="start", workflow_name="{{ params.workflow }}", cerebelum_conn_id=world.good_connection()
        )
        return world.run(rendered(operator, workflow_name=workflow_name))

    return run


# (layer, id, action, error type, words the message must contain)
BAD_INPUTS = [
    # The hook's client: the named cases for execution ids and list arguments.
    ("client", "empty-execution-id", _call("get_execution_status", ""), ValueError, ["execution_id"]),
    ("client", "none-execution-id", _call("get_execution_status", None), TypeError, ["execution_id"]),
    ("client", "int-execution-id", _call("resume_execution", 42), TypeError, ["execution_id"]),
    ("client", "10000-char-execution-id", _call("resume_execution", LONG_ID), ValueError,
     ["execution_id", "10000"]),
    ("client", "limit-0", _call("list_executions", limit=0), ValueError, ["limit"]),
    ("client", "limit-101", _call("list_executions", limit=101), ValueError, ["limit", "101"]),
    ("client", "limit-minus-1", _call("list_executions", limit=-1), ValueError, ["limit"]),
    ("client", "limit-string", _call("list_executions", limit="10"), TypeError, ["limit", "'10'"]),
    ("client", "offset-minus-1", _call("list_executions", offset=-1), ValueError, ["offset"]),
    ("client", "status-no-state", _call("list_executions", status="DONE"), ValueError, ["DONE"]),
    ("client", "skip-steps-string", _call("resume_execution", "x", skip_completed_steps="no"), TypeError,
     ["skip_completed_steps"]),
    ("client", "execute-tags-string", _call("execute_workflow", "orders", tags="urgent"), TypeError, ["tags"]),
    # The connection, read by the hook.
    # Airflow itself refuses a URI whose port is no number; a Connection object can still carry one.
    ("connection", "port-not-a-number", _port_not_a_number, ValueError, ["port", "ninety"]),
    ("connection", "port-out-of-range", _hook_client(port=70000), ValueError, ["port", "70000"]),
    ("connection", "missing-host", _hook_client(host=""), ValueError, ["host"]),
    ("connection", "host-with-scheme", _hook_client(host="ftp://core.example"), ValueError,
     ["host", "ftp://core.example"]),
    ("connection", "host-with-port", _hook_client(host="localhost:14001"), ValueError,
     ["host", "'localhost:14001'", "Port field"]),
    ("connection", "pasted-key-not-pem", _extra(client_cert_pem="x", client_private_key_pem="s3cret-key-text"),
     ValueError, ["client_cert_pem", "PEM block"]),
    ("connection", "tls-unreadable-ca", _missing_ca, ValueError, ["ca_cert", "/nonexistent/ca.pem"]),
    ("connection", "tls-not-a-bool", _extra(tls="maybe"), ValueError, ["tls", "maybe"]),
    ("connection", "tls-off-with-ca", _extra(tls=False, ca_cert="/etc/hosts"), ValueError, ["tls", "ca_cert"]),
    ("connection", "cert-without-key", _extra(client_cert="/etc/hosts"), ValueError, ["client_cert", "client_key"]),
    ("connection", "timeout-zero", _extra(timeout=0), ValueError, ["timeout"]),
    ("connection", "timeout-not-a-number", _extra(timeout="soon"), ValueError, ["timeout", "soon"]),
    ("connection", "ui-url-unknown-scheme", _extra(ui_url="ftp://core/{execution_id}"), ValueError,
     ["ui_url"]),
    ("hook", "empty-conn-id", lambda world: CerebelumHook(""), ValueError, ["cerebelum_conn_id"]),
    # The sensor.
    ("sensor", "empty-execution-id", _sensor(execution_id=""), ValueError, ["execution_id"]),
    ("sensor", "none-execution-id", _sensor(execution_id=None), TypeError, ["execution_id"]),
    ("sensor", "10000-char-execution-id", _sensor(execution_id=LONG_ID), ValueError, ["execution_id", "10000"]),
    ("sensor", "none-execution-id-at-run", _sensor_run(None), TypeError, ["execution_id"]),
    ("sensor", "status-no-state", _sensor(success_states=["DONE"]), ValueError, ["success_states", "DONE"]),
    ("sensor", "states-overlap", _sensor(success_states=["COMPLETED"], failure_states=["COMPLETED", "FAILED"]),
     ValueError, ["overlap", "EXECUTION_COMPLETED"]),
    ("sensor", "no-success-state", _sensor(success_states=[]), ValueError, ["success_states"]),
    ("sensor", "poll-interval-0", _sensor(poll_interval=0), ValueError, ["poll_interval"]),
    ("sensor", "poll-interval-negative", _sensor(poll_interval=-1), ValueError, ["poll_interval"]),
    ("sensor", "poke-interval-0", _sensor(poke_interval=0), ValueError, ["poke_interval"]),
    ("sensor", "max-sleep-wait-0", _sensor(max_sleep_wait=0), ValueError, ["max_sleep_wait"]),
    ("sensor", "unavailable-timeout-negative", _sensor(unavailable_timeout=-5), ValueError,
     ["unavailable_timeout"]),
    ("sensor", "rendered-10000-char-id", _sensor_run(LONG_ID), ValueError, ["execution_id", "10000"]),
    # The trigger (what the sensor and operators defer to).
    ("trigger", "empty-execution-id", _trigger(execution_id=" "), ValueError, ["execution_id"]),
    ("trigger", "poll-interval-0", _trigger(poll_interval=0), ValueError, ["poll_interval"]),
    ("trigger", "states-overlap", _trigger(success_states=["FAILED"]), ValueError, ["overlap"]),
    ("trigger", "end-time-not-a-number", _trigger(end_time="tomorrow"), ValueError, ["end_time"]),
    # Resume one execution.
    ("resume operator", "empty-execution-id", _resume(execution_id=""), ValueError, ["execution_id"]),
    ("resume operator", "int-execution-id", _resume(execution_id=42), TypeError, ["execution_id"]),
    ("resume operator", "10000-char-execution-id", _resume(execution_id=LONG_ID), ValueError,
     ["execution_id", "10000"]),
    ("resume operator", "poll-interval-0", _resume(poll_interval=0), ValueError, ["poll_interval"]),
    ("resume operator", "timeout-negative", _resume(timeout=-1), ValueError, ["timeout"]),
    ("resume operator", "skip-steps-string", _resume(skip_completed_steps="yes"), TypeError,
     ["skip_completed_steps"]),
    ("resume operator", "rendered-empty-id", _resume_run(""), ValueError, ["execution_id"]),
    # Bulk resume.
    ("bulk operator", "max-concurrency-0", _bulk(max_concurrency=0), ValueError, ["max_concurrency"]),
    ("bulk operator", "max-concurrency-string", _bulk(max_concurrency="16"), TypeError, ["max_concurrency"]),
    ("bulk operator", "status-no-state", _bulk(states=["NOPE"]), ValueError, ["states", "NOPE"]),
    ("bulk operator", "unspecified-state", _bulk(states=["UNSPECIFIED"]), ValueError, ["states", "UNSPECIFIED"]),
    ("bulk operator", "no-state", _bulk(states=[]), ValueError, ["states"]),
    ("bulk operator", "empty-workflow-name", _bulk(workflow_name=""), ValueError, ["workflow_name"]),
    ("bulk operator", "max-executions-0", _bulk(max_executions=0), ValueError, ["max_executions"]),
    ("bulk operator", "plan-only-string", _bulk(plan_only="no"), TypeError, ["plan_only"]),
    ("bulk operator", "dry-run-renamed", _bulk(dry_run=True), TypeError, ["dry_run", "plan_only"]),
    ("bulk operator", "rendered-blank-workflow", _bulk_run("  "), ValueError, ["workflow_name"]),
    # Start a workflow.
    ("execute operator", "empty-workflow-name", _execute(workflow_name=""), ValueError, ["workflow_name"]),
    ("execute operator", "inputs-not-a-dict", _execute(inputs="a=1"), TypeError, ["inputs"]),
    ("execute operator", "inputs-reserved-key", _execute(inputs={"_airflow_correlation_id": "x"}), ValueError,
     ["_airflow_correlation_id"]),
    ("execute operator", "tags-string", _execute(tags="urgent"), TypeError, ["tags"]),
    ("execute operator", "blank-correlation-id", _execute(correlation_id="  "), ValueError, ["correlation_id"]),
    ("execute operator", "poll-interval-negative", _execute(poll_interval=-1), ValueError, ["poll_interval"]),
    ("execute operator", "rendered-10000-char-workflow", _execute_run(LONG_ID), ValueError,
     ["workflow_name", "10000"]),
]

LAYERS = {"client", "connection", "hook", "sensor", "trigger", "resume operator", "bulk operator", "execute operator"}


def test_the_table_has_at_least_30_cases_across_every_layer():
    assert len(BAD_INPUTS) >= 30
    assert {layer for layer, *_ in BAD_INPUTS} == LAYERS
    ids = [f"{layer}:{name}" for layer, name, *_ in BAD_INPUTS]
    assert len(ids) == len(set(ids))


@pytest.fixture
def world(core, monkeypatch) -> World:
    failed_id = core.start_execution("orders", fail_at=1)
    core.run_until_settled(failed_id)
    return World(core=core, failed_id=failed_id, monkeypatch=monkeypatch)


@pytest.mark.parametrize(
    ("layer", "name", "action", "error", "words"),
    BAD_INPUTS,
    ids=[f"{layer.replace(' ', '-')}:{name}" for layer, name, *_ in BAD_INPUTS],
)
def test_bad_input_is_refused_before_anything_is_sent(world, layer, name, action, error, words):
    with pytest.raises((error, AirflowFailException)) as caught:
        action(world)
    if isinstance(caught.value, AirflowFailException):
        # Found in execute, once rendered: the task fails without Airflow's retries.
        assert isinstance(caught.value.__cause__, error), f"{layer}/{name}: {caught.value.__cause__!r}"
    message = str(caught.value)
    for word in words:
        assert word in message, f"{layer}/{name}: {word!r} not in {message!r}"
    assert len(message) < 600  # clear, not a dump (a 10,000-character id is not echoed whole)
    assert world.core.call_counts() == {}
    assert world.core.resume_count(world.failed_id) == 0
    assert world.core.execution_ids() == [world.failed_id]
