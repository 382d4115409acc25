"""The Airflow connection against the real Cerebelum Core, release be56c90: defaults, Test, mismatches.

- A connection with only host, port and token (no ``api``: HTTP, the default) works, and its Test
  lists executions and reads one's status. The port is given because this stack's Core listens on
  a free port, not on 4001 (tests/provider/test_hook.py::test_defaults_speak_http_on_4001 pins
  the default port).
- The same over gRPC fails its Test naming the fix (``api=http``): this release lists a non-empty
  page and reads a status over gRPC with ``UNKNOWN "Internal Server Error"``.
- gRPC at Core's HTTP port (this release answers ``UNIMPLEMENTED``, "Received http2 header with
  status: 404") and HTTP at its gRPC port (an empty HTTP 404 from Cowboy) fail at once, not
  retried, with ``CoreAPIMismatchError`` naming the setting to change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest
from real_core import RealCore

from tests.airflow_env import configure_airflow_home

# Airflow reads its home when first imported: before anything below imports it.
configure_airflow_home()

from cerebelum_provider.client import RetryConfig, SyncExecutionClient  # noqa: E402
from cerebelum_provider.exceptions import CoreAPIMismatchError  # noqa: E402
from cerebelum_provider.hooks.cerebelum import CerebelumHook  # noqa: E402

pytestmark = [pytest.mark.realcore, pytest.mark.shares_real_core, pytest.mark.timeout(120)]

#: The Core release whose behaviour these tests pin.
RELEASE = "be56c90"
#: Five attempts a minute apart: a retry would show in the log and outlast the test's timeout.
NO_PATIENCE = RetryConfig(max_attempts=5, initial_backoff=60.0, max_backoff=60.0)
WORKFLOW = "rc_conn_ok"


@pytest.fixture(scope="module")
def core(real_core: RealCore) -> RealCore:
    assert real_core.release == RELEASE, f"these tests pin what Core {RELEASE} does; here: {real_core.release}"
    real_core.add_blueprint(WORKFLOW, ("ok_a", "ok_b"))
    execution_id = real_core.start_execution(WORKFLOW)
    real_core.wait_for_state(execution_id, ("completed",))
    return real_core


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """``connection(conn_id, host=..., port=..., password=..., extra=...)``: an AIRFLOW_CONN_* JSON."""

    def set_(conn_id: str, **fields: object) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "cerebelum", **fields}))
        return conn_id

    yield set_


def _grpc_port(core: RealCore) -> int:
    return int(core.grpc_target.rsplit(":", 1)[1])


def test_a_connection_with_host_port_and_token_speaks_http_and_its_test_reads_a_status(core, connection):
    conn_id = connection("rc_fresh", host="127.0.0.1", port=core.http_port, password=core.token)
    hook = CerebelumHook(conn_id)
    assert hook.get_settings().api == "http"
    ok, message = hook.test_connection()
    assert ok, message
    assert message.startswith(f"Connected to Cerebelum Core at {core.http_url} over HTTP: ")
    assert "the status of" in message and message.endswith(("(COMPLETED)", "(RUNNING)", "(FAILED)"))
    assert core.token not in message


def test_the_same_connection_over_grpc_fails_its_test_naming_the_http_api(core, connection):
    conn_id = connection("rc_fresh_grpc", host="127.0.0.1", port=_grpc_port(core), extra=json.dumps({"api": "grpc"}))
    ok, message = CerebelumHook(conn_id).test_connection()
    assert not ok
    assert "over gRPC, as the released Cores do" in message and "set Core API to http (api=http)" in message
    assert "CoreInternalError" in message and "\n" not in message


def test_a_wrong_token_fails_the_test_naming_the_token(core, connection):
    conn_id = connection("rc_bad_token", host="127.0.0.1", port=core.http_port, password="not-a-token-core-signed")
    ok, message = CerebelumHook(conn_id).test_connection()
    assert not ok and "refused the token" in message and "not-a-token-core-signed" not in message


@pytest.mark.parametrize(("api", "port_of", "setting"), [("grpc", "http", "api=http"), ("http", "grpc", "api=grpc")])
def test_the_other_apis_port_is_a_mismatch_named_at_once(core, connection, caplog, api, port_of, setting):
    port = core.http_port if port_of == "http" else _grpc_port(core)
    url = f"127.0.0.1:{port}" if api == "grpc" else f"http://127.0.0.1:{port}"
    caplog.set_level(logging.INFO, logger="cerebelum_provider")
    with SyncExecutionClient(url, token=core.token, retry=NO_PATIENCE) as client:
        with pytest.raises(CoreAPIMismatchError, match=setting):
            client.list_executions(limit=1)
    assert not [record for record in caplog.records if "retrying" in record.getMessage()]
    conn_id = connection(f"rc_mismatch_{api}", host="127.0.0.1", port=port, password=core.token, extra=json.dumps({"api": api}))
    ok, message = CerebelumHook(conn_id).test_connection()
    assert not ok and f"answers the other API at port {port}" in message and f"({setting})" in message
