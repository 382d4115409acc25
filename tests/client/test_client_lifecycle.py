"""Channel lifecycle, threads, event loops, imports and logging of the clients."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from cerebelum_provider.client import ExecutionClient, SyncExecutionClient
from cerebelum_provider.exceptions import CerebelumRPCError, CoreUnavailableError, ErrorCode
from tests.client.conftest import FAST_RETRY
from tests.client.scripted_core import Abort, status_message


def test_client_package_imports_no_airflow():
    code = (
        "import sys, cerebelum_provider.client; "
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_top_level_package_loads_grpc_only_when_a_client_is_asked_for():
    code = (
        "import sys, cerebelum_provider; before = 'grpc' in sys.modules; "
        "cerebelum_provider.ExecutionClient; print(before, 'grpc' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["False", "True"]


async def test_close_then_call_opens_a_new_channel(core, make_client):
    execution_id = core.start_execution("orders")
    client = make_client(core.address)
    await client.get_execution_status(execution_id)
    transport = client.client._transport
    first_channel = transport._channel
    await client.close()
    assert transport._channel is None
    await client.get_execution_status(execution_id)
    # A new channel object, not the closed one revived. (Counting peers cannot show this: gRPC's
    # process-wide subchannel pool may hand the new channel a TCP connection another live
    # channel to the same address already holds.)
    assert transport._channel is not None and transport._channel is not first_channel
    assert core.call_counts()["GetExecutionStatus"] == 2


def test_sync_client_shares_one_channel_across_threads(core):
    ids = [core.start_execution("orders") for _ in range(8)]
    with SyncExecutionClient(core.address) as client, ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(client.get_execution_status, ids * 4))
    assert [status.execution_id for status in statuses] == ids * 4
    assert len(core.peers()) == 1
    assert core.call_counts()["GetExecutionStatus"] == 32


def test_async_client_refuses_a_second_event_loop(core):
    execution_id = core.start_execution("orders")
    client = ExecutionClient(core.address)
    asyncio.run(client.get_execution_status(execution_id))
    with pytest.raises(RuntimeError, match="one client per loop"):
        asyncio.run(client.get_execution_status(execution_id))


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_nothing_listening_is_core_unavailable_naming_the_address(make_client):
    address = f"127.0.0.1:{_unused_port()}"
    with pytest.raises(CoreUnavailableError) as caught:
        await make_client(address).get_execution_status("any")
    assert address in str(caught.value) and "3 attempts" in str(caught.value)


async def test_not_found_without_an_execution_id_is_an_rpc_error(scripted, make_client):
    # A proxy answering NOT_FOUND for a listing means a wrong route, not a missing execution.
    scripted.default("ListExecutions", Abort(grpc.StatusCode.NOT_FOUND, "no route"))
    with pytest.raises(CerebelumRPCError) as caught:
        await make_client(scripted.address).list_executions()
    assert caught.value.code == ErrorCode.NOT_FOUND
    assert caught.value.transport_code == grpc.StatusCode.NOT_FOUND


async def test_each_retry_is_logged_without_the_token(scripted, make_client, caplog):
    scripted.queue(
        "GetExecutionStatus", Abort(grpc.StatusCode.UNAVAILABLE), Abort(grpc.StatusCode.UNAVAILABLE)
    )
    scripted.default("GetExecutionStatus", status_message("exec-log"))
    with caplog.at_level(logging.WARNING, logger="cerebelum_provider.client"):
        await make_client(scripted.address, token="hidden-token").get_execution_status("exec-log")
    retries = [record.getMessage() for record in caplog.records if record.name == "cerebelum_provider.client"]
    assert len(retries) == 2
    assert all("UNAVAILABLE" in line and scripted.address in line for line in retries)
    assert "attempt 1 of 3" in retries[0] and "attempt 2 of 3" in retries[1]
    assert not any("hidden-token" in record.getMessage() for record in caplog.records)


def test_fast_retry_is_what_the_tests_use():
    assert FAST_RETRY.max_attempts == 3
