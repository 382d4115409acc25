"""TLS through the connection and the hook, against the emulator serving TLS with a CA made per run.

tests/client/test_client_tls.py covers the clients against a scripted TLS server (name
override, grpcs:// URLs, unreadable and empty CA files); tests/emulator/test_faults.py the
emulator's own TLS. Here the whole path a deployment uses is checked: an Airflow connection with
``ca_cert`` / ``client_cert`` / ``client_key`` extras, the hook's clients and the trigger.
"""

from __future__ import annotations

import asyncio

import pytest

from cerebelum_provider.client import RetryConfig
from cerebelum_provider.emulator import EmulatorTLS
from cerebelum_provider.exceptions import CerebelumTLSError, CoreUnavailableError
from cerebelum_provider.hooks.cerebelum import CerebelumHook
from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger
from tests.reliability.triggerer import run_in_triggerer

# A retry would wait a minute: finishing under the test's timeout proves there was none.
NO_PATIENCE = RetryConfig(max_attempts=5, initial_backoff=60.0, max_backoff=60.0)
TOKEN = "tls-test-token-0123456789"


def _server_tls(tls_files, *, mutual: bool) -> EmulatorTLS:
    return EmulatorTLS(
        cert_chain_pem=tls_files.server.cert_pem,
        private_key_pem=tls_files.server.key_pem,
        client_ca_pem=tls_files.ca.cert_pem if mutual else None,
    )


def _extras(tls_files, client: str) -> dict[str, str]:
    return {
        "right-ca": {"ca_cert": tls_files.ca_path},
        "wrong-ca": {"ca_cert": tls_files.other_ca_path},
        "client-cert": {
            "ca_cert": tls_files.ca_path,
            "client_cert": tls_files.client_cert_path,
            "client_key": tls_files.client_key_path,
        },
        "plaintext": {"tls": "false"},
    }[client]


TLS_CASES = [
    # (server requires a client certificate, what the connection gives, expected error or None)
    pytest.param(False, "right-ca", None, id="right-ca-connects"),
    pytest.param(False, "wrong-ca", CerebelumTLSError, id="wrong-ca-fails-fast"),
    pytest.param(True, "client-cert", None, id="mtls-with-client-cert-connects"),
    # A refused handshake is retried within the connection's budget (about 8 s of back-offs).
    pytest.param(
        True, "right-ca", CoreUnavailableError, id="mtls-without-client-cert-refused", marks=pytest.mark.waits
    ),
    pytest.param(
        False, "plaintext", CoreUnavailableError, id="plaintext-to-tls-refused", marks=pytest.mark.waits
    ),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("mutual", "client", "error"), TLS_CASES)
def test_hook_over_tls(core_factory, set_connection, tls_files, mutual, client, error):
    core = core_factory(tls=_server_tls(tls_files, mutual=mutual), token=TOKEN)
    execution_id = core.start_execution("orders")
    conn_id = set_connection(core.address, token=TOKEN, **_extras(tls_files, client))
    hook = CerebelumHook(conn_id, retry=NO_PATIENCE if error is CerebelumTLSError else None)
    with hook.get_client() as sync_client:
        if error is None:
            assert sync_client.get_execution_status(execution_id).execution_id == execution_id
            assert core.call_counts() == {"GetExecutionStatus": 1}
            assert hook.test_connection()[0]
            return
        with pytest.raises(error) as caught:
            sync_client.get_execution_status(execution_id)
    assert core.address in str(caught.value)
    assert core.call_counts() == {}  # refused in the handshake: no call reached Core
    ok, message = hook.test_connection()
    assert not ok and core.address in message and TOKEN not in message


@pytest.mark.timeout(30)
def test_hook_async_client_over_mtls(core_factory, set_connection, tls_files):
    core = core_factory(tls=_server_tls(tls_files, mutual=True))
    execution_id = core.start_execution("orders")
    conn_id = set_connection(core.address, **_extras(tls_files, "client-cert"))

    async def ask():
        client = await CerebelumHook(conn_id).get_async_client()
        return await client.get_execution_status(execution_id)

    assert asyncio.run(ask()).execution_id == execution_id


@pytest.mark.waits
@pytest.mark.timeout(30)
async def test_trigger_with_wrong_ca_fires_one_tls_error_at_once(core_factory, set_connection, tls_files):
    core = core_factory(tls=_server_tls(tls_files, mutual=False))
    execution_id = core.start_execution("orders")
    set_connection(core.address, **_extras(tls_files, "wrong-ca"))
    payloads = await run_in_triggerer(CerebelumExecutionTrigger(execution_id, poll_interval=30))
    assert len(payloads) == 1
    event = payloads[0]
    assert (event["status"], event["error_type"]) == ("error", "CerebelumTLSError")
    assert core.address in event["message"]
    assert core.call_counts() == {}
