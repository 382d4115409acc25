"""CerebelumExecutionSensor: construction, poke() against the emulator, and dag.test() in all three modes.

The dag.test() runs use real Airflow (task runner, in-process execution API, SQLite metadata
database) on the DAGs in ``dags/cerebelum_sensor_dags.py``, one per mode and soft_fail setting,
with a 2-second sensor timeout; the emulator moves executions on in real time.
"""

from __future__ import annotations

import json
import threading
import time

import grpc
import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from cerebelum_provider.exceptions import CerebelumAuthError, CoreAPIMismatchError, CoreUnavailableError
from cerebelum_provider.models import ExecutionState
from cerebelum_provider.sensors.cerebelum import CerebelumExecutionSensor
from tests.core_apis import connection_uri, core_url
from tests.provider.dags.cerebelum_sensor_dags import MODES, dag_id

TOKEN = "s3cret-sensor-token"


def sensor(**kwargs) -> CerebelumExecutionSensor:
    return CerebelumExecutionSensor(task_id="wait", **{"execution_id": "exec-1", **kwargs})


# Construction --------------------------------------------------------------------------------


def test_execution_id_is_templated_and_states_accept_enum_name_or_value():
    built = sensor(success_states=[ExecutionState.COMPLETED, "SLEEPING", "EXECUTION_WAITING_FOR_APPROVAL"])
    assert "execution_id" in built.template_fields
    assert built.success_states == ("EXECUTION_COMPLETED", "EXECUTION_SLEEPING", "EXECUTION_WAITING_FOR_APPROVAL")
    assert built.failure_states == ("EXECUTION_FAILED",)
    assert sensor(poll_interval=2).poke_interval == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"success_states": ["COMPLETED", "FAILED"]}, ValueError, r"success_states.*failure_states.*EXECUTION_FAILED"),
        ({"failure_states": ["EXECUTION_COMPLETED"]}, ValueError, "overlap"),
        ({"success_states": ["FINISHED"]}, ValueError, "success_states"),
        ({"failure_states": [None]}, TypeError, "failure_states"),
        ({"execution_id": ""}, ValueError, "execution_id"),
        ({"execution_id": "   "}, ValueError, "execution_id"),
        ({"poll_interval": 0}, ValueError, "poll_interval"),
        ({"poll_interval": 1, "poke_interval": 1}, ValueError, "poll_interval"),
        ({"cerebelum_conn_id": ""}, ValueError, "cerebelum_conn_id"),
        ({"max_sleep_wait": -1}, ValueError, "max_sleep_wait"),
        ({"unavailable_timeout": 0}, ValueError, "unavailable_timeout"),
    ],
)
def test_bad_arguments_are_refused_at_construction(kwargs, error, names):
    with pytest.raises(error, match=names):
        sensor(**kwargs)


def line_says(line: str, phrases: tuple[str, ...]) -> bool:
    return any(phrase in line for phrase in phrases)


# poke() against the emulator -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "done"),
    [
        ({}, False),  # RUNNING
        ({"sleep_at": 0}, False),  # SLEEPING
        ({"approval_at": 0}, False),  # WAITING_FOR_APPROVAL
        ({"complete": True}, True),  # COMPLETED
    ],
    ids=["running", "sleeping", "waiting_for_approval", "completed"],
)
def test_poke_in_each_state(core, cerebelum_conn, setup, done, capfd):
    execution_id = core.start_execution("orders", **{k: v for k, v in setup.items() if k != "complete"})
    core.advance(1)
    if setup.get("complete"):
        core.complete(execution_id)
    waiting = sensor(execution_id=execution_id)
    result = waiting.poke({})
    assert result.is_done is done
    assert result.xcom_value["execution_id"] == execution_id
    output = capfd.readouterr()
    # Over REST, Core's status does not name the workflow.
    said = (f"execution {execution_id} (orders) is", f"execution {execution_id} is")
    progress = [line for line in (output.out + output.err).splitlines() if line_says(line, said)]
    assert len(progress) == 1, progress


def test_poke_fails_with_cores_error_on_a_failure_state(core, cerebelum_conn):
    execution_id = core.start_execution("orders", fail_at=1, error_kind="timeout_error", error_message="upstream slow")
    core.run_until_settled()
    with pytest.raises(AirflowFailException, match="EXECUTION_FAILED: timeout_error: upstream slow"):
        sensor(execution_id=execution_id).poke({})


def test_custom_states_decide_done_and_failed(core, cerebelum_conn):
    execution_id = core.start_execution("orders", approval_at=0)
    core.advance(1)
    assert sensor(execution_id=execution_id, success_states=["WAITING_FOR_APPROVAL"]).poke({}).is_done
    with pytest.raises(AirflowFailException, match="EXECUTION_WAITING_FOR_APPROVAL"):
        sensor(execution_id=execution_id, failure_states=["FAILED", "WAITING_FOR_APPROVAL"]).poke({})


def test_poke_on_unknown_execution_fails_clearly(core, cerebelum_conn):
    with pytest.raises(AirflowFailException, match=rf"{core_url(core)} knows no execution 'no-such-id'"):
        sensor(execution_id="no-such-id").poke({})


@pytest.mark.waits
def test_core_unavailable_in_poke_is_not_done_until_the_budget(core, cerebelum_conn):
    execution_id = core.start_execution("orders")
    core.fail_next(5, code=grpc.StatusCode.UNAVAILABLE)  # one call's whole retry budget
    patient = sensor(execution_id=execution_id)
    assert patient.poke({}).is_done is False
    assert patient.poke({}).is_done is False  # Core answers again: RUNNING
    core.fail_next(5, code=grpc.StatusCode.UNAVAILABLE)
    # The outage counts from the start of the first failed check, the client's own retries
    # included: those alone outlast this budget.
    strict = sensor(execution_id=execution_id, unavailable_timeout=0.001)
    with pytest.raises(CoreUnavailableError, match=rf"Core at {core_url(core)} unreachable since 20\d\d-") as caught:
        strict.poke({})
    assert "longer than unavailable_timeout (0.001s)" in str(caught.value)


def test_wrong_token_fails_at_once(core_factory, monkeypatch):
    guarded = core_factory(token=TOKEN)
    execution_id = guarded.start_execution("orders")
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(guarded, token="wrong-token"))
    # No Airflow retry: the same token would be refused again.
    with pytest.raises(AirflowFailException, match="UNAUTHENTICATED|HTTP 401") as caught:
        sensor(execution_id=execution_id).poke({})
    assert isinstance(caught.value.__cause__, CerebelumAuthError)
    assert "wrong-token" not in str(caught.value)
    assert guarded.call_counts()["GetExecutionStatus"] == 1


@pytest.mark.apis("http")  # the test picks each API itself, pointed at the other one's port
@pytest.mark.parametrize(("api", "setting"), [("grpc", "api=http"), ("http", "api=grpc")])
def test_a_connection_at_the_other_apis_port_fails_at_once(core, monkeypatch, api, setting):
    execution_id = core.start_execution("orders")
    other_port = core.http_port if api == "grpc" else core.port
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", f"cerebelum://127.0.0.1:{other_port}?api={api}")
    # No Airflow retry either: the same port answers the same way until the connection changes.
    with pytest.raises(AirflowFailException, match=setting) as caught:
        sensor(execution_id=execution_id).poke({})
    assert isinstance(caught.value.__cause__, CoreAPIMismatchError)


# execute_complete(): trigger events to outcomes ----------------------------------------------


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({"status": "failure", "message": "ended in EXECUTION_FAILED: step_error: boom"}, AirflowFailException),
        ({"status": "timeout", "message": "Timed out waiting"}, AirflowSensorTimeout),
        ({"status": "error", "message": "knows no execution", "error_type": "ExecutionNotFoundError"},
         AirflowFailException),
        ({"status": "error", "message": "Core at h:1 unreachable", "error_type": "CoreUnavailableError",
          "core_address": "h:1"}, CoreUnavailableError),
        ({"status": "error", "message": "refused", "error_type": "CerebelumAuthError"}, AirflowFailException),
        ({"status": "error", "message": "failed internally", "error_type": "CoreInternalError"},
         AirflowFailException),
        ({"status": "error", "message": "Invalid Cerebelum connection", "error_type": "InvalidConnection"},
         AirflowFailException),
        ({"status": "nonsense", "message": "?"}, AirflowException),
    ],
    ids=["failure", "timeout", "not_found", "unavailable", "auth", "core_crash", "bad_connection", "not_an_event"],
)
def test_execute_complete_maps_each_event(event, error):
    with pytest.raises(error, match=event["message"].replace("?", "unknown status")):
        sensor().execute_complete({}, {"execution_id": "exec-1", **event})


def test_execute_complete_returns_the_execution_on_success():
    execution = {"execution_id": "exec-1", "status": "EXECUTION_COMPLETED"}
    assert sensor().execute_complete({}, {"status": "success", "message": "ok", "execution": execution}) == execution


# dag.test() in poke, reschedule and deferrable mode ------------------------------------------


@pytest.fixture
def live_core(core_factory, monkeypatch, airflow_db):
    """An emulator moving executions on every 50 ms, behind the default connection (with ui_url)."""
    emulator = core_factory(step_seconds=0.05)
    uri = connection_uri(emulator, token=TOKEN, ui_url="https://core.example/executions/{execution_id}")
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", uri)
    return emulator


def run_sensor_dag(mode: str, execution_id: str, soft_fail: bool = False, short_timeout: bool = False):
    """Run the sensor DAG for ``mode`` and return (task state, its XComs by key).

    ``short_timeout`` picks the DAG whose sensor times out after 2 s, for the timeout cases.
    """
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from tests.provider.dags import cerebelum_sensor_dags

    dag = getattr(cerebelum_sensor_dags, dag_id(mode, soft_fail, short_timeout))
    run = dag.test(run_conf={"execution_id": execution_id})
    task_instance = run.get_task_instance("wait")
    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id="wait").all()
        xcoms = {row.key: XComModel.deserialize_value(row) for row in rows}
    return task_instance.state, xcoms


@pytest.mark.parametrize("mode", MODES)
def test_dag_success_returns_the_execution_and_links_it(live_core, mode, capfd, caplog):
    execution_id = live_core.start_execution("orders")
    state, xcoms = run_sensor_dag(mode, execution_id)
    assert state == "success"
    assert xcoms["return_value"]["status"] == "EXECUTION_COMPLETED"
    assert xcoms["return_value"]["execution_id"] == execution_id
    assert xcoms["execution_id"] == execution_id
    assert xcoms["_link_CerebelumExecutionLink"] == f"https://core.example/executions/{execution_id}"
    output = capfd.readouterr()
    assert TOKEN not in output.out + output.err + caplog.text
    assert TOKEN not in json.dumps(xcoms)


@pytest.mark.parametrize("mode", MODES)
def test_dag_failure_state_fails_with_cores_error(live_core, mode, capfd):
    execution_id = live_core.start_execution("orders", fail_at=1, error_kind="step_error", error_message="disk full")
    state, _ = run_sensor_dag(mode, execution_id)
    assert state == "failed"
    output = capfd.readouterr()
    assert "AirflowFailException" in output.out + output.err
    assert "EXECUTION_FAILED: step_error: disk full" in output.out + output.err


@pytest.mark.parametrize("mode", MODES)
def test_dag_unknown_execution_fails_clearly(live_core, mode, capfd):
    state, _ = run_sensor_dag(mode, "no-such-execution")
    assert state == "failed"
    output = capfd.readouterr()
    assert "knows no execution 'no-such-execution'" in output.out + output.err


@pytest.mark.parametrize("mode", MODES)
def test_dag_timeout_is_a_real_sensor_timeout(live_core, mode, capfd):
    execution_id = live_core.start_execution("orders", approval_at=0)  # waits for approval forever
    state, _ = run_sensor_dag(mode, execution_id, short_timeout=True)
    assert state == "failed"
    output = capfd.readouterr()
    assert "AirflowSensorTimeout" in output.out + output.err


@pytest.mark.parametrize("mode", MODES)
def test_dag_soft_fail_skips_on_timeout(live_core, mode):
    execution_id = live_core.start_execution("orders", approval_at=0)
    state, _ = run_sensor_dag(mode, execution_id, soft_fail=True, short_timeout=True)
    assert state == "skipped"


@pytest.mark.parametrize("mode", MODES)
def test_dag_soft_fail_skips_on_failure_state(live_core, mode):
    execution_id = live_core.start_execution("orders", fail_at=0)
    state, _ = run_sensor_dag(mode, execution_id, soft_fail=True)
    assert state == "skipped"


def test_deferrable_sensor_checks_before_deferring(live_core, capfd, caplog):
    execution_id = live_core.start_execution("orders")
    live_core.complete(execution_id)
    state, xcoms = run_sensor_dag("deferrable", execution_id)
    assert state == "success"
    assert xcoms["return_value"]["status"] == "EXECUTION_COMPLETED"
    output = capfd.readouterr()
    assert "running trigger in line" not in output.out + output.err + caplog.text


def test_deferrable_sensor_defers_while_the_execution_runs(live_core, capfd, caplog):
    execution_id = live_core.start_execution("orders", approval_at=0)  # waits until approved

    def approve_once_the_trigger_polls():
        # Call 1 is the sensor's own check in the worker; call 2 comes from the trigger.
        while (
            live_core.call_counts().get("GetExecutionStatus", 0) < 2
            or live_core.status(execution_id).status is not ExecutionState.WAITING_FOR_APPROVAL
        ):
            time.sleep(0.01)
        live_core.approve(execution_id)

    approver = threading.Thread(target=approve_once_the_trigger_polls, daemon=True)
    approver.start()
    state, xcoms = run_sensor_dag("deferrable", execution_id)
    approver.join(timeout=5)
    output = capfd.readouterr()
    assert state == "success", output.out[-2000:]
    assert xcoms["return_value"]["status"] == "EXECUTION_COMPLETED"
    assert "running trigger in line" in output.out + output.err + caplog.text


def test_without_ui_url_the_link_opens_the_execution_page_in_airflow(live_core, monkeypatch):
    # The connection names no Core UI: the link is the Cerebelum plugin's page, under Airflow's base URL,
    # computed when the task defers as when it ends.
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(live_core, token=TOKEN))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/team-a/")
    execution_id = live_core.start_execution("orders")
    state, xcoms = run_sensor_dag("deferrable", execution_id)
    assert state == "success"
    assert xcoms["_link_CerebelumExecutionLink"] == (
        f"https://airflow.example/team-a/cerebelum/connections/cerebelum_default/executions/{execution_id}"
    )
