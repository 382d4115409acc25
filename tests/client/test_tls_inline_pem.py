"""TLS material given as PEM instead of paths: both APIs against a mutual-TLS emulator."""

from __future__ import annotations

import tempfile

import pytest

from cerebelum_provider.client import SyncExecutionClient, TLSConfig
from cerebelum_provider.emulator import CoreEmulator, EmulatorTLS
from cerebelum_provider.exceptions import CerebelumTLSError, CoreUnavailableError
from tests.client.tls_material import write_tls_files

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return write_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def mtls_core(tls_files):
    server_tls = EmulatorTLS(tls_files.server.cert_pem, tls_files.server.key_pem, client_ca_pem=tls_files.ca.cert_pem)
    with CoreEmulator(tls=server_tls) as core:
        yield core


def _url(core: CoreEmulator, api: str) -> str:
    return core.http_url if api == "http" else f"grpcs://{core.address}"


@pytest.mark.parametrize("api", ["grpc", "http"])
@pytest.mark.parametrize("as_text", [False, True], ids=["bytes", "str"])
def test_mutual_tls_from_pem_alone(mtls_core, tls_files, monkeypatch, tmp_path, api, as_text):
    # Over HTTP the pasted key passes through a private temporary file: it must be gone afterwards.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    convert = (lambda pem: pem.decode()) if as_text else (lambda pem: pem)
    tls = TLSConfig(
        ca_cert_pem=convert(tls_files.ca.cert_pem),
        client_cert_pem=convert(tls_files.client.cert_pem),
        client_key_pem=convert(tls_files.client.key_pem),
    )
    execution_id = mtls_core.start_execution("orders")
    with SyncExecutionClient(_url(mtls_core, api), tls=tls) as client:
        assert client.get_execution_status(execution_id).execution_id == execution_id
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("api", ["grpc", "http"])
def test_pem_and_paths_mix(mtls_core, tls_files, api):
    tls = TLSConfig(
        ca_cert_path=tls_files.ca_path, client_cert_pem=tls_files.client.cert_pem, client_key_path=tls_files.client_key_path
    )
    with SyncExecutionClient(_url(mtls_core, api), tls=tls) as client:
        assert client.list_executions(limit=1)[1] >= 0


@pytest.mark.parametrize("api", ["grpc", "http"])
def test_wrong_ca_pem_is_a_tls_error(mtls_core, tls_files, api):
    tls = TLSConfig(
        ca_cert_pem=tls_files.other_ca.cert_pem,
        client_cert_pem=tls_files.client.cert_pem,
        client_key_pem=tls_files.client.key_pem,
    )
    with SyncExecutionClient(_url(mtls_core, api), tls=tls) as client, pytest.raises(
        (CerebelumTLSError, CoreUnavailableError)
    ) as raised:
        client.list_executions(limit=1)
    assert isinstance(raised.value, CerebelumTLSError), raised.value


def test_key_pem_never_shows_in_repr(tls_files):
    tls = TLSConfig(client_cert_pem=tls_files.client.cert_pem, client_key_pem=tls_files.client.key_pem)
    assert "PRIVATE KEY" not in repr(tls) and tls_files.client.key_pem.decode() not in repr(tls)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ca_cert_path": "/etc/hostname", "ca_cert_pem": b"x"}, "ca_cert_path or ca_cert_pem, not both"),
        ({"client_cert_pem": b"-----BEGIN CERTIFICATE-----"}, "got only the certificate"),
        ({"client_key_pem": "-----BEGIN PRIVATE KEY-----"}, "got only the key"),
        ({"client_key_pem": "  "}, "non-empty PEM"),
    ],
)
def test_bad_pem_options_are_refused(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message) as raised:
        TLSConfig(**kwargs)
    assert "PRIVATE KEY" not in str(raised.value)


def test_a_key_that_does_not_match_the_certificate_is_refused_before_anything_is_sent(tls_files, mtls_core, tmp_path):
    other = write_tls_files(tmp_path)
    tls = TLSConfig(client_cert_pem=tls_files.client.cert_pem, client_key_pem=other.client.key_pem)
    calls_before = sum(mtls_core.call_counts().values())
    with pytest.raises(ValueError, match="not a matching PEM certificate and key") as raised:
        SyncExecutionClient(mtls_core.http_url, tls=tls)
    assert other.client.key_pem.decode() not in str(raised.value)
    assert sum(mtls_core.call_counts().values()) == calls_before
