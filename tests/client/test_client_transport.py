"""A client given its transport: ``transport=`` replaces the address and settings, and the
client's API is the transport's. What clients send through transports is in
test_client_emulator.py, which runs through each of them."""

from __future__ import annotations

import pytest

from cerebelum_provider.client import CoreAPI, ExecutionClient, RetryConfig, SyncExecutionClient
from cerebelum_provider.client._grpc_transport import AsyncGrpcTransport, SyncGrpcTransport
from cerebelum_provider.client.config import ClientSettings
from cerebelum_provider.emulator import CoreEmulator
from cerebelum_provider.exceptions import CoreUnavailableError, UnsupportedOperationError
from tests.client.conftest import FAST_RETRY


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"core_url": "core.example:9090"}, "core_url"),
        ({"token": "s3cret-token", "timeout": 3.0}, "token, timeout"),
        ({"tls": True, "retry": RetryConfig()}, "tls, retry"),
    ],
)
@pytest.mark.parametrize("blocking", [False, True], ids=["async", "sync"])
def test_transport_with_the_settings_it_replaces_is_refused_naming_them(arguments, named, blocking):
    client_class = SyncExecutionClient if blocking else ExecutionClient
    transport = CoreEmulator(http_port=None).client_transport(blocking=blocking)
    with pytest.raises(ValueError, match=f"got transport= together with {named}: ") as caught:
        client_class(transport=transport, **arguments)
    assert "s3cret-token" not in str(caught.value)


@pytest.mark.parametrize("blocking", [False, True], ids=["async", "sync"])
def test_a_transport_of_the_other_kind_is_refused(blocking):
    client_class = SyncExecutionClient if blocking else ExecutionClient
    other = CoreEmulator(http_port=None).client_transport(blocking=not blocking)
    wanted = "SyncTransport" if blocking else "AsyncTransport"
    with pytest.raises(TypeError, match=f"implements cerebelum_provider.client.transport.{wanted} .*got"):
        client_class(transport=other)
    with pytest.raises(TypeError, match=f"{wanted} .*got str"):
        client_class(transport="http://core.example:4001")


async def test_the_client_speaks_its_transports_api(core, make_client):
    # The default address (localhost:9090) would mean gRPC: the transport's API wins.
    over_http = make_client(transport_for=lambda blocking: core.client_transport(blocking=blocking))
    assert over_http.client.api is CoreAPI.HTTP
    assert over_http.client.address == "http://emulator.in-process:80"
    assert "transport=" in repr(over_http.client)
    assert await over_http.find_reruns() == {}  # an HTTP-only call, sent

    settings = ClientSettings.build(core.address, tls=None, token=None, timeout=5.0, retry=None)
    over_grpc = make_client(
        transport_for=lambda blocking: (SyncGrpcTransport if blocking else AsyncGrpcTransport)(settings)
    )
    assert over_grpc.client.api is CoreAPI.GRPC and over_grpc.client.address == core.address
    with pytest.raises(UnsupportedOperationError, match="api=http"):
        await over_grpc.find_reruns()
    assert core.call_counts() == {"ListExecutions": 1}  # the refused call sent nothing


async def test_in_process_needs_no_rest_server_and_a_stopped_emulator_is_unavailable(make_client):
    emulator = CoreEmulator(http_port=None)  # no REST server: the app is reached in process
    client = make_client(
        transport_for=lambda blocking: emulator.client_transport(blocking=blocking, retry=FAST_RETRY)
    )
    with pytest.raises(CoreUnavailableError, match="after 3 attempts: ConnectError"):
        await client.list_executions()  # not started yet
    with emulator:
        execution_id = emulator.start_execution("orders")
        assert (await client.get_execution_status(execution_id)).execution_id == execution_id
    with pytest.raises(CoreUnavailableError, match="not running"):
        await client.get_execution_status(execution_id)
    assert emulator.call_counts() == {"GetExecutionStatus": 1}
