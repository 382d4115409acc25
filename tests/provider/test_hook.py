"""CerebelumHook and connection parsing: every field, every bad value, and real calls to the emulator."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import types
import weakref

import grpc
import pytest
from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowNotFoundException

from cerebelum_provider._core import CORE_DEFAULT_GRPC_PORT, CORE_DEFAULT_HTTP_PORT, DEFAULT_CALL_TIMEOUT
from cerebelum_provider.emulator import EmulatorTLS, RealCoreBugs
from cerebelum_provider.hooks import cerebelum as hook_module
from cerebelum_provider.hooks._connection import parse_connection
from cerebelum_provider.hooks.cerebelum import CerebelumHook
from tests.client.tls_material import write_tls_files
from tests.core_apis import connection_uri, core_url

TOKEN = "s3cret-hook-token"


def connection(**kwargs) -> Connection:
    extra = kwargs.pop("extra", None)
    return Connection(
        conn_id="cerebelum_test",
        conn_type="cerebelum",
        extra=json.dumps(extra) if isinstance(extra, dict) else extra,
        **kwargs,
    )


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return write_tls_files(tmp_path_factory.mktemp("tls"))


# Parsing -------------------------------------------------------------------------------------


def test_uri_form_with_string_extras(tls_files):
    uri = (
        f"cerebelum://:{TOKEN}@core.example.com:9443?tls=true&ca_cert={tls_files.ca_path}"
        "&timeout=2.5&ui_url=https%3A%2F%2Fcore.example%2Fexecutions%2F%7Bexecution_id%7D"
    )
    settings = parse_connection(Connection.from_uri(uri, conn_id="cerebelum_test"))
    assert (settings.host, settings.port, settings.address) == ("core.example.com", 9443, "https://core.example.com:9443")
    assert settings.token == TOKEN
    assert settings.tls is True and settings.ca_cert == tls_files.ca_path
    assert settings.timeout == 2.5
    assert settings.ui_url == "https://core.example/executions/{execution_id}"
    assert TOKEN not in repr(settings)


def test_defaults_speak_http_on_4001():
    settings = parse_connection(connection(host="core"))
    assert (settings.api, settings.port, settings.timeout, settings.tls, settings.token) == (
        "http", CORE_DEFAULT_HTTP_PORT, DEFAULT_CALL_TIMEOUT, False, None
    )
    assert settings.address == "http://core:4001" and settings.api_defaulted


def test_grpc_is_one_choice_away():
    settings = parse_connection(connection(host="core", extra={"api": "grpc"}))
    assert (settings.api, settings.port, settings.address) == ("grpc", CORE_DEFAULT_GRPC_PORT, "core:9090")
    assert not settings.api_defaulted


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(True, True), (False, False), ("true", True), ("True", True), ("1", True), (1, True), ("false", False),
     ("0", False), ("no", False), ("", False)],
)
def test_tls_flag_accepts_json_and_uri_spellings(raw, expected):
    assert parse_connection(connection(host="core", extra={"tls": raw})).tls is expected


def test_request_budget_and_coalesced_polling_default_and_parse():
    settings = parse_connection(connection(host="core"))
    assert (settings.request_budget, settings.coalesce_polling) == (900.0, True)
    settings = parse_connection(connection(host="core", extra={"request_budget": "600", "coalesce_polling": "false"}))
    assert (settings.request_budget, settings.coalesce_polling) == (600.0, False)


def test_ui_form_prefixed_extras_are_read_too():
    settings = parse_connection(connection(host="core", extra={"extra__cerebelum__timeout": 3, "extra__cerebelum__tls": "1"}))
    assert (settings.timeout, settings.tls) == (3.0, True)


def test_tls_files_switch_tls_on_by_themselves(tls_files):
    assert parse_connection(connection(host="core", extra={"ca_cert": tls_files.ca_path})).tls is True


def test_client_kwargs_build_a_tls_config(tls_files):
    settings = parse_connection(
        connection(
            host="core",
            password=TOKEN,
            extra={"api": "grpc", "tls": True, "ca_cert": tls_files.ca_path, "client_cert": tls_files.client_cert_path,
                   "client_key": tls_files.client_key_path, "server_name": "core.internal"},
        )
    )
    kwargs = settings.client_kwargs()
    assert kwargs["core_url"] == "core:9090" and kwargs["token"] == TOKEN and kwargs["timeout"] == DEFAULT_CALL_TIMEOUT
    assert kwargs["tls"].ca_cert_path == tls_files.ca_path
    assert kwargs["tls"].server_name_override == "core.internal"


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({}, "host is missing"),
        ({"host": "   "}, "host is missing"),
        ({"host": "grpc://core"}, "bare host name"),
        ({"host": "core/path"}, "bare host name"),
        ({"host": "localhost:14001"}, "'localhost:14001'; put the port in the Port field"),
        ({"host": "[::1]:4001"}, "put the port in the Port field"),
        ({"host": "core", "port": "abc"}, "port must be a number"),
        ({"host": "core", "port": 70000}, "port must be in 1..65535"),
        ({"host": "core", "port": 0}, "port must be in 1..65535"),
        ({"host": "core", "extra": {"timeout": 0}}, "'timeout'"),
        ({"host": "core", "extra": {"timeout": -1}}, "'timeout'"),
        ({"host": "core", "extra": {"timeout": "soon"}}, "'timeout'"),
        ({"host": "core", "extra": {"timeout": "nan"}}, "'timeout'"),
        ({"host": "core", "extra": {"tls": "maybe"}}, "'tls'"),
        ({"host": "core", "extra": {"tls": True, "ca_cert": "/no/such/ca.pem"}}, "'ca_cert'.*/no/such/ca.pem"),
        ({"host": "core", "extra": {"tls": False, "ca_cert": "/etc/hostname"}}, "'tls' is false"),
        ({"host": "core", "extra": {"client_cert": "/etc/hostname"}}, "client_cert.*client_key"),
        ({"host": "core", "extra": {"client_key": "/etc/hostname"}}, "client_cert.*client_key"),
        ({"host": "core", "extra": {"ca_cert": 5}}, "'ca_cert' must be a string"),
        ({"host": "core", "extra": {"ui_url": "core.example/{execution_id}"}}, "'ui_url'"),
        ({"host": "core", "extra": {"request_budget": 0}}, "'request_budget' must be a number of requests a minute of at least 1 .*got 0$"),
        ({"host": "core", "extra": {"request_budget": "lots"}}, "'request_budget'.*got 'lots'"),
        ({"host": "core", "extra": {"request_budget": True}}, "'request_budget'.*got True"),
        ({"host": "core", "extra": {"coalesce_polling": "sometimes"}}, "'coalesce_polling' must be true or false.*'sometimes'"),
    ],
)
def test_bad_connections_are_refused_naming_the_field(kwargs, names):
    with pytest.raises(ValueError, match=names):
        parse_connection(connection(**kwargs))


@pytest.mark.parametrize("host", ["::1", "[::1]", "fe80::1"])
def test_an_ipv6_host_is_not_taken_for_host_and_port(host):
    settings = parse_connection(connection(host=host))
    assert settings.host == host.strip("[]") and settings.address == f"http://[{host.strip('[]')}]:4001"


def test_unreadable_ca_file_is_refused(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    ca.chmod(0)
    if os.access(ca, os.R_OK):  # root reads anything; a directory is unreadable as a file for everyone
        ca = tmp_path
    with pytest.raises(ValueError, match="ca_cert"):
        parse_connection(connection(host="core", extra={"tls": True, "ca_cert": str(ca)}))


def test_a_bad_connection_fails_before_anything_is_sent(core, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, timeout="0"))
    with pytest.raises(ValueError, match="timeout"):
        CerebelumHook().get_client()
    assert sum(core.call_counts().values()) == 0


# The hook ------------------------------------------------------------------------------------


def test_hook_attributes_and_repr(monkeypatch, core):
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, token=TOKEN))
    hook = CerebelumHook()
    assert (hook.conn_type, hook.conn_name_attr, hook.default_conn_name, hook.hook_name) == (
        "cerebelum", "cerebelum_conn_id", "cerebelum_default", "Cerebelum Core"
    )
    hook.get_settings()
    client = hook.get_client()
    try:
        for text in (repr(hook), str(hook.__dict__), repr(client), repr(hook.get_settings())):
            assert TOKEN not in text
        assert TOKEN not in json.dumps(CerebelumHook.describe_settings(hook.get_settings()))
    finally:
        client.close()
    with pytest.raises(ValueError, match="cerebelum_conn_id"):
        CerebelumHook("")


def test_get_client_talks_to_core(core, cerebelum_conn):
    execution_id = core.start_execution("orders")
    with CerebelumHook().get_client() as client:
        assert client.get_execution_status(execution_id).execution_id == execution_id


def test_get_client_sends_the_token(core_factory, monkeypatch):
    guarded = core_factory(token=TOKEN)
    execution_id = guarded.start_execution("orders")
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(guarded, token=TOKEN))
    with CerebelumHook().get_client() as client:
        assert client.get_execution_status(execution_id).execution_id == execution_id


@pytest.mark.apis("grpc", "http")  # a gRPC channel is one connection, an httpx pool several
async def test_get_async_client_is_shared_within_the_loop(core, cerebelum_conn, core_api):
    execution_id = core.start_execution("orders")
    clients = await asyncio.gather(*(CerebelumHook().get_async_client() for _ in range(20)))
    assert len({id(client) for client in clients}) == 1
    await asyncio.gather(*(client.get_execution_status(execution_id) for client in clients))
    first_round = core.peers()
    await asyncio.gather(*(client.get_execution_status(execution_id) for client in clients))
    # gRPC multiplexes every call on one HTTP/2 connection; HTTP/1.1 needs one connection per call
    # in flight, and the pool keeps and reuses them: the second round opens none.
    assert len(first_round) == 1 if core_api == "grpc" else 1 <= len(first_round) <= 20
    assert core.peers() == first_round


class LookupRecord:
    """The connection ids CerebelumHook asked Airflow for; each lookup may be held at ``gate``."""

    def __init__(self) -> None:
        self.conn_ids: list[str] = []
        self.gate: asyncio.Event | None = None


@pytest.fixture
def lookups(monkeypatch) -> LookupRecord:
    """Record every Airflow connection lookup the hook makes (each still goes to Airflow)."""
    record = LookupRecord()
    original = CerebelumHook.aget_connection

    async def recorded(cls, conn_id):
        record.conn_ids.append(conn_id)
        if record.gate is not None:
            await record.gate.wait()
        return await original(conn_id)

    monkeypatch.setattr(CerebelumHook, "aget_connection", classmethod(recorded))
    return record


async def test_concurrent_hooks_in_one_loop_share_one_connection_lookup(
    core, cerebelum_conn, lookups, monkeypatch
):
    lookups.gate = asyncio.Event()
    callers = [asyncio.ensure_future(CerebelumHook().aget_settings()) for _ in range(50)]
    await asyncio.sleep(0.05)  # every caller has asked; the one lookup is held at the gate
    assert lookups.conn_ids == ["cerebelum_default"]
    assert not any(caller.done() for caller in callers)
    lookups.gate.set()
    settings = await asyncio.gather(*callers)
    assert len({id(one) for one in settings}) == 1
    assert settings[0].address == CerebelumHook().get_settings().address
    # A hook made later in the loop reuses it; another connection id is looked up on its own.
    assert await CerebelumHook().aget_settings() is settings[0]
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_OTHER", connection_uri(core, timeout="3"))
    assert (await CerebelumHook("cerebelum_other").aget_settings()).timeout == 3
    assert lookups.conn_ids == ["cerebelum_default", "cerebelum_other"]


async def test_an_edited_connection_is_seen_once_the_cached_lookup_expires(core, monkeypatch, lookups):
    clock = [1_000.0]
    monkeypatch.setattr(hook_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, timeout="5"))
    assert (await CerebelumHook().aget_settings()).timeout == 5
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, timeout="7"))
    clock[0] += hook_module.CONNECTION_CACHE_SECONDS - 0.1
    assert (await CerebelumHook().aget_settings()).timeout == 5  # still the earlier lookup
    clock[0] += 0.1
    assert (await CerebelumHook().aget_settings()).timeout == 7
    assert lookups.conn_ids == ["cerebelum_default"] * 2


async def test_a_failed_lookup_is_not_kept(core, monkeypatch, lookups):
    monkeypatch.delenv("AIRFLOW_CONN_CEREBELUM_LATER", raising=False)
    with pytest.raises(AirflowNotFoundException, match="cerebelum_later"):
        await CerebelumHook("cerebelum_later").aget_settings()
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_LATER", connection_uri(core, timeout="0"))
    # Concurrent callers share the failing lookup and each gets its error.
    lookups.gate = asyncio.Event()
    callers = [asyncio.ensure_future(CerebelumHook("cerebelum_later").aget_settings()) for _ in range(5)]
    await asyncio.sleep(0.05)
    lookups.gate.set()
    errors = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(error, ValueError) and "timeout" in str(error) for error in errors), errors
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_LATER", connection_uri(core, timeout="4"))
    assert (await CerebelumHook("cerebelum_later").aget_settings()).timeout == 4
    assert lookups.conn_ids == ["cerebelum_later"] * 3


def test_each_event_loop_looks_the_connection_up_itself(core, cerebelum_conn, lookups):
    loops = []

    async def settings_in_a_new_loop():
        loops.append(weakref.ref(asyncio.get_running_loop()))
        return await CerebelumHook().aget_settings()

    first = asyncio.run(settings_in_a_new_loop())
    second = asyncio.run(settings_in_a_new_loop())
    assert first is not second and first.address == second.address
    assert lookups.conn_ids == ["cerebelum_default"] * 2
    # The cache keeps no finished loop alive (Airflow's SDK remembers a thread's latest loop itself).
    gc.collect()
    assert loops[0]() is None


def test_execution_url(monkeypatch, core):
    monkeypatch.setenv(
        "AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, ui_url="https://core.example/e/{execution_id}")
    )
    assert CerebelumHook().execution_url("abc") == "https://core.example/e/abc"
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core))
    assert CerebelumHook().execution_url("abc") is None
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core, ui_url="https://core.example/{run}"))
    with pytest.raises(ValueError, match="execution_id"):
        CerebelumHook().execution_url("abc")


# test_connection() ---------------------------------------------------------------------------


@pytest.mark.apis("grpc", "http")  # the Test button names the API it connected over
def test_test_connection_lists_and_reads_the_status_of_one_execution(core, cerebelum_conn, core_api):
    for _ in range(3):
        core.start_execution("orders")
    ok, message = CerebelumHook().test_connection()
    assert ok, message
    assert message.startswith(f"Connected to Cerebelum Core at {core_url(core)} over {core_api.upper().replace('GRPC', 'gRPC')}: 3 executions")
    assert message.endswith("read (RUNNING)")
    assert (core.call_counts()["ListExecutions"], core.call_counts()["GetExecutionStatus"]) == (1, 1)


def test_test_connection_fails_when_the_status_read_fails(core, cerebelum_conn):
    execution_id = core.start_execution("orders")
    core.fail_next(1, grpc.StatusCode.INTERNAL, rpcs="GetExecutionStatus")
    ok, message = CerebelumHook().test_connection()
    assert not ok
    # over HTTP the emulator's 500 is the released Core's bare "busy engine" answer: "did not answer"
    assert f"reading the status of execution {execution_id!r}" in message and "\n" not in message


@pytest.mark.apis("grpc")
def test_test_connection_over_grpc_to_a_crashing_core_names_the_http_api(core_factory, monkeypatch, core_api):
    """The released Core (be56c90) crashes on every non-empty page and status read over gRPC."""
    crashing = core_factory(real_core_bugs=RealCoreBugs(status_crash=True))
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(crashing))
    ok, message = CerebelumHook().test_connection()
    assert ok and "no executions" in message and "api=http" in message
    crashing.start_execution("orders")
    ok, message = CerebelumHook().test_connection()
    assert not ok
    assert "over gRPC" in message and "set Core API to http (api=http)" in message and "CoreInternalError" in message


@pytest.mark.parametrize(("api", "port_of", "fix"), [("grpc", "http_port", "api=http"), ("http", "grpc_port", "api=grpc")])
def test_test_connection_at_the_other_apis_port_names_the_setting(core, monkeypatch, api, port_of, fix):
    port = core.http_port if port_of == "http_port" else int(core.address.rsplit(":", 1)[1])
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", f"cerebelum://127.0.0.1:{port}?api={api}")
    ok, message = CerebelumHook().test_connection()
    assert not ok and "CoreAPIMismatchError" in message
    assert f"answers the other API at port {port}: set Core API to {fix[4:]} ({fix})" in message


def test_test_connection_refuses_a_port_in_the_host_field_before_sending(core, monkeypatch):
    host = f"127.0.0.1:{core.http_port}"
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", json.dumps({"conn_type": "cerebelum", "host": host}))
    ok, message = CerebelumHook().test_connection()
    assert not ok
    assert f"host must be a bare host name or IP address without a port, got {host!r}; put the port in the Port field" in message
    assert sum(core.call_counts().values()) == 0


def test_test_connection_reports_an_unreachable_core(core, monkeypatch):
    uri, address = connection_uri(core), core_url(core)
    core.stop()
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", uri)
    ok, message = CerebelumHook().test_connection()
    assert not ok
    assert address in message


def test_test_connection_reports_a_refused_token_without_showing_it(core_factory, monkeypatch):
    guarded = core_factory(token=TOKEN)
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(guarded, token="wrong-token-value"))
    ok, message = CerebelumHook().test_connection()
    assert not ok and "CerebelumAuthError" in message
    assert "wrong-token-value" not in message and TOKEN not in message


def test_test_connection_reports_an_invalid_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", "cerebelum://core.example.com?timeout=-1")
    ok, message = CerebelumHook().test_connection()
    assert not ok and "timeout" in message


def test_test_connection_over_tls_and_mtls(core_factory, monkeypatch, tls_files):
    tls_core = core_factory(tls=EmulatorTLS(tls_files.server.cert_pem, tls_files.server.key_pem))
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(tls_core, tls="true", ca_cert=tls_files.ca_path))
    assert CerebelumHook().test_connection()[0] is True
    monkeypatch.setenv(
        "AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(tls_core, tls="true", ca_cert=tls_files.other_ca_path)
    )
    ok, message = CerebelumHook().test_connection()
    assert not ok and "TLS" in message

    mtls_core = core_factory(
        tls=EmulatorTLS(tls_files.server.cert_pem, tls_files.server.key_pem, client_ca_pem=tls_files.ca.cert_pem)
    )
    with_client_cert = connection_uri(
        mtls_core, ca_cert=tls_files.ca_path, client_cert=tls_files.client_cert_path,
        client_key=tls_files.client_key_path,
    )
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", with_client_cert)
    assert CerebelumHook().test_connection()[0] is True
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(mtls_core, ca_cert=tls_files.ca_path))
    assert CerebelumHook().test_connection()[0] is False


# Pasted PEM ----------------------------------------------------------------------------------


def _flattened(pem: bytes) -> str:
    """What a browser's password box keeps of a pasted PEM: its line breaks are gone."""
    return pem.decode().replace("\n", "")


@pytest.mark.apis("grpc", "http")  # pasted PEM must work for both a gRPC channel and an httpx pool
def test_pasted_pem_connects_over_mtls_without_any_file(core_factory, monkeypatch, tls_files, core_api):
    mtls_core = core_factory(
        tls=EmulatorTLS(tls_files.server.cert_pem, tls_files.server.key_pem, client_ca_pem=tls_files.ca.cert_pem)
    )
    extras = {
        "tls": True,
        "ca_cert_pem": tls_files.ca.cert_pem.decode(),
        "client_cert_pem": _flattened(tls_files.client.cert_pem),
        "client_private_key_pem": _flattened(tls_files.client.key_pem),
    }
    port = mtls_core.http_port if core_api == "http" else int(mtls_core.address.rsplit(":", 1)[1])
    monkeypatch.setenv(
        "AIRFLOW_CONN_CEREBELUM_DEFAULT",
        json.dumps({"conn_type": "cerebelum", "host": "127.0.0.1", "port": port, "extra": {"api": core_api, **extras}}),
    )
    hook = CerebelumHook()
    settings = hook.get_settings()
    assert settings.client_key_pem == tls_files.client.key_pem.decode()
    assert settings.ca_cert is None and settings.client_key is None
    ok, message = hook.test_connection()
    assert ok, message
    shown = repr(settings) + json.dumps(CerebelumHook.describe_settings(settings)) + message
    assert "PRIVATE KEY" not in shown and tls_files.client.key_pem.decode().splitlines()[1] not in shown


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ({"client_private_key_pem": "my-secret-key-text", "client_cert_pem": "x"}, "'client_cert_pem' must hold a PEM block"),
        ({"client_cert_pem": "-----BEGIN CERTIFICATE-----QUJD-----END CERTIFICATE-----",
          "client_private_key_pem": "my-secret-key-text"}, "'client_private_key_pem' must hold a PEM block '-----BEGIN PRIVATE KEY-----'"),
        ({"ca_cert": "/etc/hostname", "ca_cert_pem": "-----BEGIN CERTIFICATE-----QUJD-----END CERTIFICATE-----"},
         "give 'ca_cert' \\(a file path\\) or 'ca_cert_pem' \\(pasted PEM\\), not both"),
        ({"client_private_key_pem": "-----BEGIN PRIVATE KEY-----QUJD-----END PRIVATE KEY-----"}, "got only the key"),
        ({"tls": False, "ca_cert_pem": "-----BEGIN CERTIFICATE-----QUJD-----END CERTIFICATE-----"}, "'tls' is false"),
    ],
)
def test_bad_pasted_pem_is_refused_naming_the_field_but_not_the_value(extra, names):
    with pytest.raises(ValueError, match=names) as raised:
        parse_connection(connection(host="core", extra=extra))
    assert "my-secret-key-text" not in str(raised.value)


def test_pasted_pem_is_rewrapped_and_switches_tls_on(tls_files):
    settings = parse_connection(connection(host="core", extra={"ca_cert_pem": _flattened(tls_files.ca.cert_pem)}))
    assert settings.tls is True
    assert settings.ca_cert_pem == tls_files.ca.cert_pem.decode()
