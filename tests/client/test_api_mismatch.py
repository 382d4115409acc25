"""A client pointed at the port of Core's other API: one clear error naming the setting, no retry.

Against the emulator, whose REST server speaks HTTP/1.1 only and whose gRPC server HTTP/2 only.
The real Core's ports answer differently (its HTTP port speaks HTTP/2 too, its gRPC port answers
HTTP/1.1 an empty 404): tests/realcore/test_connection.py pins those.
"""

from __future__ import annotations

import logging

import pytest

from cerebelum_provider.client import ExecutionClient, RetryConfig, SyncExecutionClient
from cerebelum_provider.emulator import CoreEmulator
from cerebelum_provider.exceptions import CoreAPIMismatchError

# Five attempts a minute apart: a retry would show in the log (and outlast the test's timeout).
NO_PATIENCE = RetryConfig(max_attempts=5, initial_backoff=60.0, max_backoff=60.0)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def emulator():
    with CoreEmulator() as core:
        yield core


def _wrong_urls(core: CoreEmulator) -> dict[str, tuple[str, str]]:
    """{which: (core_url at the other API's port, the setting the error must name)}."""
    return {
        "grpc-at-http-port": (f"127.0.0.1:{core.http_port}", "api=http"),
        "http-at-grpc-port": (f"http://{core.address}", "api=grpc"),
    }


@pytest.mark.parametrize("which", ["grpc-at-http-port", "http-at-grpc-port"])
def test_blocking_client_at_the_other_apis_port(emulator, caplog, which):
    url, setting = _wrong_urls(emulator)[which]
    caplog.set_level(logging.INFO, logger="cerebelum_provider")
    with SyncExecutionClient(url, retry=NO_PATIENCE) as client, pytest.raises(CoreAPIMismatchError) as raised:
        client.list_executions(limit=1)
    assert setting in str(raised.value) and raised.value.core_address in str(raised.value)
    assert not [record for record in caplog.records if "retrying" in record.getMessage()]


@pytest.mark.parametrize("which", ["grpc-at-http-port", "http-at-grpc-port"])
async def test_asyncio_client_at_the_other_apis_port(emulator, caplog, which):
    url, setting = _wrong_urls(emulator)[which]
    caplog.set_level(logging.INFO, logger="cerebelum_provider")
    async with ExecutionClient(url, retry=NO_PATIENCE) as client:
        with pytest.raises(CoreAPIMismatchError, match=setting):
            await client.get_execution_status("some-execution")
    assert not [record for record in caplog.records if "retrying" in record.getMessage()]
