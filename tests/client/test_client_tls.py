"""TLS, mutual TLS, server-name override and the token over TLS, with certificates made per run."""

from __future__ import annotations

import grpc
import pytest

from cerebelum_provider.client import ExecutionClient, RetryConfig, SyncExecutionClient, TLSConfig
from cerebelum_provider.exceptions import CerebelumTLSError, CoreUnavailableError
from tests.client.scripted_core import ScriptedCore, status_message
from tests.client.tls_material import write_tls_files

# A retry would wait a minute: a test that finishes under its timeout proves there was none.
NO_PATIENCE = RetryConfig(max_attempts=5, initial_backoff=60.0, max_backoff=60.0)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return write_tls_files(tmp_path_factory.mktemp("tls"))


def _serve(key_pem, cert_pem, client_ca=None):
    credentials = grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
    core = ScriptedCore(credentials).start()
    core.default("GetExecutionStatus", lambda request: status_message(request.execution_id))
    return core


@pytest.fixture
def tls_core(tls_files):
    core = _serve(tls_files.server.key_pem, tls_files.server.cert_pem)
    yield core
    core.stop()


@pytest.fixture
def mtls_core(tls_files):
    core = _serve(tls_files.server.key_pem, tls_files.server.cert_pem, client_ca=tls_files.ca.cert_pem)
    yield core
    core.stop()


async def test_tls_with_generated_ca_and_token(make_client, tls_core, tls_files):
    client = make_client(tls_core.address, tls=TLSConfig(ca_cert_path=tls_files.ca_path), token="tls-token")
    status = await client.get_execution_status("exec-tls")
    assert status.execution_id == "exec-tls"
    assert tls_core.received()[0].metadata["authorization"] == "Bearer tls-token"


async def test_grpcs_url_turns_tls_on(tls_core, tls_files):
    port = tls_core.address.rsplit(":", 1)[1]
    async with ExecutionClient(
        f"grpcs://127.0.0.1:{port}", tls=TLSConfig(ca_cert_path=tls_files.ca_path)
    ) as client:
        assert (await client.get_execution_status("exec-s")).execution_id == "exec-s"


async def test_server_name_override(make_client, tls_files):
    core = _serve(tls_files.named_server.key_pem, tls_files.named_server.cert_pem)
    try:
        tls = TLSConfig(ca_cert_path=tls_files.ca_path, server_name_override="core.internal")
        assert (
            await make_client(core.address, tls=tls).get_execution_status("exec-n")
        ).execution_id == "exec-n"
    finally:
        core.stop()


@pytest.mark.timeout(30)
async def test_name_mismatch_fails_fast_as_tls_error(make_client, tls_files):
    core = _serve(tls_files.named_server.key_pem, tls_files.named_server.cert_pem)
    try:
        client = make_client(core.address, tls=TLSConfig(ca_cert_path=tls_files.ca_path), retry=NO_PATIENCE)
        with pytest.raises(CerebelumTLSError):
            await client.get_execution_status("exec-m")
        assert core.count() == 0
    finally:
        core.stop()


@pytest.mark.timeout(30)
async def test_wrong_ca_fails_fast_without_retries(make_client, tls_core, tls_files):
    client = make_client(
        tls_core.address, tls=TLSConfig(ca_cert_path=tls_files.other_ca_path), retry=NO_PATIENCE
    )
    with pytest.raises(CerebelumTLSError) as caught:
        await client.get_execution_status("exec-w")
    assert tls_core.address in str(caught.value)
    assert isinstance(caught.value, CoreUnavailableError)  # callers catching "unavailable" still catch it
    assert tls_core.count() == 0


async def test_mutual_tls(make_client, mtls_core, tls_files):
    tls = TLSConfig(
        ca_cert_path=tls_files.ca_path,
        client_cert_path=tls_files.client_cert_path,
        client_key_path=tls_files.client_key_path,
    )
    assert (
        await make_client(mtls_core.address, tls=tls).get_execution_status("exec-m")
    ).execution_id == "exec-m"
    assert mtls_core.count() == 1


async def test_mutual_tls_without_client_certificate_is_refused(make_client, mtls_core, tls_files):
    client = make_client(mtls_core.address, tls=TLSConfig(ca_cert_path=tls_files.ca_path))
    with pytest.raises(CoreUnavailableError):
        await client.get_execution_status("exec-x")
    assert mtls_core.count() == 0


@pytest.mark.parametrize("client_class", [ExecutionClient, SyncExecutionClient])
def test_unreadable_ca_file_fails_at_construction_naming_the_path(tmp_path, client_class):
    missing = str(tmp_path / "nope" / "ca.pem")
    with pytest.raises(ValueError, match="ca_cert_path") as caught:
        client_class("127.0.0.1:1", tls=TLSConfig(ca_cert_path=missing))
    assert missing in str(caught.value)


def test_empty_ca_file_is_refused(tmp_path):
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        SyncExecutionClient("127.0.0.1:1", tls=TLSConfig(ca_cert_path=str(empty)))


def test_tls_config_needs_both_halves_of_the_client_certificate():
    with pytest.raises(ValueError, match="client_key_path"):
        TLSConfig(client_cert_path="/x.pem")
