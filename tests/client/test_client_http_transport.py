"""The REST transport's failures, retries, TLS and connection pool, against the emulator on loopback.

Where gRPC has the same case, the test runs over both APIs (``api``) and expects the same error
type and attempt count: a caller branches on the type, whichever API the address names. The
emulator turns an injected gRPC code into the HTTP answer a proxy or Core would give (UNAVAILABLE
-> 503, DEADLINE_EXCEEDED -> 504, RESOURCE_EXHAUSTED -> 429, UNAUTHENTICATED -> 401,
PERMISSION_DENIED -> 403).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time

import grpc
import httpx
import pytest

from cerebelum_provider.client import ExecutionClient, RetryConfig, SyncExecutionClient, TLSConfig, _retry
from cerebelum_provider.emulator import CoreEmulator, EmulatorTLS
from cerebelum_provider.exceptions import (
    CerebelumAuthError,
    CerebelumTLSError,
    CoreUnavailableError,
    ErrorCode,
    ExecutionNotFoundError,
)
from cerebelum_provider.models import ExecutionState
from tests.client.conftest import FAST_RETRY
from tests.client.scripted_rest import Reply, ScriptedRest
from tests.client.tls_material import write_tls_files

# A retry would wait a minute: a test that finishes under its timeout proves there was none.
NO_PATIENCE = RetryConfig(max_attempts=5, initial_backoff=60.0, max_backoff=60.0)
TOKEN = "s3cret-token-value"


@pytest.fixture(params=["grpc", "http"])
def api(request):
    return request.param


def url(core: CoreEmulator, api: str) -> str:
    return core.http_url if api == "http" else core.address


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- answers that are errors ------------------------------------------------------------------


async def test_wrong_or_missing_token_is_an_auth_error_after_one_call(core_factory, make_client, api):
    core = core_factory(token=TOKEN)
    execution_id = core.start_execution("orders")
    assert (await make_client(url(core, api), token=TOKEN).get_execution_status(execution_id)).execution_id
    wrong = "wrong-token-value"
    for client in (make_client(url(core, api), token=wrong), make_client(url(core, api))):
        with pytest.raises(CerebelumAuthError) as caught:
            await client.get_execution_status(execution_id)
        message = str(caught.value)
        assert TOKEN not in message and wrong not in message and url(core, api) in message
        assert caught.value.code == ErrorCode.UNAUTHENTICATED
        assert caught.value.transport_code == (401 if api == "http" else grpc.StatusCode.UNAUTHENTICATED)
    assert core.call_counts()["GetExecutionStatus"] == 3  # one each: auth failures are not retried


async def test_token_is_never_shown(core_factory, make_client, api, caplog):
    core = core_factory(token=TOKEN)
    core.fail_next(2, code=grpc.StatusCode.UNAVAILABLE)
    client = make_client(url(core, api), token=TOKEN)
    with caplog.at_level(logging.DEBUG):
        assert await client.list_executions() == ([], 0, False)
    assert TOKEN not in repr(client.client) and "token=***" in repr(client.client)
    assert len([r for r in caplog.records if r.name == "cerebelum_provider.client"]) == 2
    assert not any(TOKEN in record.getMessage() for record in caplog.records)


async def test_permission_denied_is_an_auth_error_after_one_call(core, make_client, api):
    core.fail_next(5, code=grpc.StatusCode.PERMISSION_DENIED)
    with pytest.raises(CerebelumAuthError) as caught:
        await make_client(url(core, api), token=TOKEN).list_executions()
    assert caught.value.code == ErrorCode.PERMISSION_DENIED
    assert caught.value.transport_code == (403 if api == "http" else grpc.StatusCode.PERMISSION_DENIED)
    assert TOKEN not in str(caught.value)
    assert core.call_counts() == {"ListExecutions": 1}


async def test_auth_error_on_a_start_is_not_retried(core_factory, make_client, api):
    core = core_factory(token=TOKEN)
    with pytest.raises(CerebelumAuthError):
        await make_client(url(core, api), token="other").execute_workflow("orders")
    assert core.call_counts() == {"ExecuteWorkflow": 1} and core.execution_ids() == []


async def test_unknown_id_is_not_found_on_both_apis(core, make_client, api):
    with pytest.raises(ExecutionNotFoundError) as caught:
        await make_client(url(core, api)).get_execution_status("no-such-execution")
    assert caught.value.execution_id == "no-such-execution" and caught.value.core_address == url(core, api)
    assert caught.value.code == ErrorCode.NOT_FOUND
    assert core.call_counts() == {"GetExecutionStatus": 1}


# -- transient failures -----------------------------------------------------------------------


TRANSIENT = [
    (grpc.StatusCode.UNAVAILABLE, 503),
    (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
]


@pytest.mark.parametrize(("code", "status"), TRANSIENT, ids=[str(status) for _, status in TRANSIENT])
async def test_transient_answers_are_retried_until_success(core, make_client, api, code, status):
    execution_id = core.start_execution("orders", fail_at=0)
    core.run_until_settled()
    client = make_client(url(core, api))
    core.fail_next(2, code=code)
    assert (await client.get_execution_status(execution_id)).status is ExecutionState.FAILED
    core.fail_next(2, code=code)
    assert await client.resume_execution(execution_id) == "resumed"
    core.fail_next(2, code=code)
    assert (await client.list_executions())[1] == 1
    assert core.call_counts() == {"GetExecutionStatus": 3, "ResumeExecution": 3, "ListExecutions": 3}
    assert core.resume_count(execution_id) == 1


@pytest.mark.parametrize(("code", "status"), TRANSIENT, ids=[str(status) for _, status in TRANSIENT])
async def test_retry_budget_then_core_unavailable(core, make_client, api, code, status, monkeypatch):
    # the retry budget alone: a 429's waits for Core's next rate-limit window (on top of the budget)
    # are tested in test_client_http_scripted.py
    monkeypatch.setattr(_retry, "RATE_LIMIT_WINDOWS", 0)
    core.fail_next(10, code=code)
    retry = RetryConfig(max_attempts=4, initial_backoff=0.001, max_backoff=0.002)
    with pytest.raises(CoreUnavailableError) as caught:
        await make_client(url(core, api), retry=retry).get_execution_status("exec-1")
    assert not isinstance(caught.value, CerebelumTLSError)
    assert caught.value.code == ErrorCode[code.name]
    assert caught.value.transport_code == (status if api == "http" else code)
    assert "after 4 attempts" in str(caught.value) and caught.value.execution_id == "exec-1"
    assert core.call_counts() == {"GetExecutionStatus": 4}


async def test_one_attempt_when_retries_are_off(core, make_client, api):
    core.fail_next(3)
    with pytest.raises(CoreUnavailableError, match="after 1 attempt:"):
        await make_client(url(core, api), retry=RetryConfig(max_attempts=1)).list_executions()
    assert core.call_counts() == {"ListExecutions": 1}


async def test_refused_connection_is_retried_then_core_unavailable(make_client, api, caplog):
    port = _unused_port()
    address = f"http://127.0.0.1:{port}" if api == "http" else f"127.0.0.1:{port}"
    logs = caplog.at_level(logging.WARNING, logger="cerebelum_provider.client")
    with logs, pytest.raises(CoreUnavailableError) as caught:
        await make_client(address).get_execution_status("exec-1")
    assert not isinstance(caught.value, CerebelumTLSError)
    assert address in str(caught.value) and "after 3 attempts" in str(caught.value)
    assert caught.value.code == ErrorCode.UNAVAILABLE
    retries = [r.getMessage() for r in caplog.records if r.name == "cerebelum_provider.client"]
    assert len(retries) == 2 and "attempt 2 of 3" in retries[1]


async def test_execution_ids_are_listed_as_the_whole_listing_names_them(core, api):
    orders = [core.start_execution("orders") for _ in range(3)]
    billing = core.start_execution("billing")
    core.complete(orders[0])
    client = ExecutionClient(url(core, api), retry=FAST_RETRY)
    for workflow, status in (
        (None, None),
        ("orders", ExecutionState.RUNNING),
        (None, ExecutionState.RUNNING),
    ):
        whole, total, has_more = await client.list_executions(workflow, status, limit=2, offset=1)
        pairs, pairs_total, pairs_more = await client.list_execution_ids(workflow, status, limit=2, offset=1)
        assert pairs == [(execution.execution_id, execution.workflow_name) for execution in whole]
        assert (pairs_total, pairs_more) == (total, has_more)
    everything, _, _ = await client.list_execution_ids(limit=100)
    assert dict(everything) == {**dict.fromkeys(orders, "orders"), billing: "billing"}
    with pytest.raises(ValueError, match="limit"):
        await client.list_execution_ids(limit=101)
    await client.close()
    # The blocking twin lists the same pairs.
    with SyncExecutionClient(url(core, api), retry=FAST_RETRY) as blocking:
        assert blocking.list_execution_ids(None, ExecutionState.RUNNING, limit=2, offset=1) == (
            pairs,
            pairs_total,
            pairs_more,
        )
        with pytest.raises(ValueError, match="limit"):
            blocking.list_execution_ids(limit=101)


async def test_calls_failing_together_log_a_few_lines_and_count_the_rest(core, api, caplog, monkeypatch):
    # Thousands of waits share one client in a triggerer: a line per retry would flood its log pipe.
    ids = [core.start_execution("orders") for _ in range(30)]
    client = ExecutionClient(
        url(core, api), retry=RetryConfig(max_attempts=10, initial_backoff=0.001, max_backoff=0.002)
    )
    core.fail_next(30)
    with caplog.at_level(logging.WARNING, logger="cerebelum_provider.client"):
        answers = await asyncio.gather(*(client.get_execution_status(execution_id) for execution_id in ids))
        assert [answer.execution_id for answer in answers] == ids
        lines = [r.getMessage() for r in caplog.records if r.name == "cerebelum_provider.client"]
        assert len(lines) == _retry.FAILURE_LINES_PER_WINDOW
        assert all("retrying in" in line for line in lines)
        assert "are counted, not logged" in lines[-1]
        # The next window's first line carries the count of the 20 retries not logged.
        monkeypatch.setattr(_retry, "FAILURE_LOG_WINDOW_SECONDS", 0.0)
        caplog.clear()
        core.fail_next(1)
        await client.get_execution_status(ids[0])
    [line] = [r.getMessage() for r in caplog.records if r.name == "cerebelum_provider.client"]
    assert "retrying in" in line and "(20 more such lines were not logged in the window before)" in line
    await client.close()


async def test_start_is_not_retried_once_core_may_have_it(core, make_client, api):
    # Core ignores the id a client could send, so a second attempt would start a second execution.
    core.fail_next(1, code=grpc.StatusCode.UNAVAILABLE, rpcs="ExecuteWorkflow")
    with pytest.raises(CoreUnavailableError, match="after 1 attempt:") as caught:
        await make_client(url(core, api)).execute_workflow("orders", {"n": 1})
    assert caught.value.code == ErrorCode.UNAVAILABLE
    assert caught.value.transport_code == (503 if api == "http" else grpc.StatusCode.UNAVAILABLE)
    assert core.call_counts() == {"ExecuteWorkflow": 1} and core.execution_ids() == []


async def test_stop_and_approve_are_not_retried_once_core_may_have_them(orders_waiting, make_client):
    core, execution_id = orders_waiting
    client = make_client(core.http_url)
    core.fail_next(1, code=grpc.StatusCode.DEADLINE_EXCEEDED, rpcs=["ApproveExecution", "StopExecution"])
    with pytest.raises(CoreUnavailableError, match="after 1 attempt:"):
        await client.approve_execution(execution_id, {"ok": True})
    core.fail_next(1, code=grpc.StatusCode.DEADLINE_EXCEEDED, rpcs=["ApproveExecution", "StopExecution"])
    with pytest.raises(CoreUnavailableError, match="after 1 attempt:"):
        await client.stop_execution(execution_id)
    counts = core.call_counts()
    assert (counts["ApproveExecution"], counts["StopExecution"]) == (1, 1)
    assert core.approval_response(execution_id) is None and not core.stopped(execution_id)


@pytest.fixture
def orders_waiting(core):
    execution_id = core.start_execution("orders", approval_at=0)
    core.advance(steps=1, execution_id=execution_id)
    return core, execution_id


class _StartCoreOnFirstRetry(logging.Handler):
    """Starts a stopped emulator when the client logs its first retry: the refused first attempt
    is over and the second has not begun, with no timing to guess."""

    def __init__(self, core: CoreEmulator) -> None:
        super().__init__(logging.WARNING)
        self.core = core
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.retries += 1
        if self.retries == 1:
            self.core.start()


async def test_start_is_retried_when_the_connection_was_refused(make_client):
    # A refused connection proves the request never reached Core, so even a start is sent again.
    core = CoreEmulator().start()
    http_url = core.http_url
    core.stop()
    starter = _StartCoreOnFirstRetry(core)
    logger = logging.getLogger("cerebelum_provider.client")
    logger.addHandler(starter)
    try:
        client = make_client(
            http_url, retry=RetryConfig(max_attempts=3, initial_backoff=0.05, max_backoff=0.1)
        )
        handle = await client.execute_workflow("orders", {"n": 1})
        assert starter.retries == 1
        assert core.call_counts() == {"ExecuteWorkflow": 1}
        assert core.execution_ids() == [handle.execution_id]
    finally:
        logger.removeHandler(starter)
        core.stop()


async def test_start_against_nothing_listening_spends_the_retry_budget(make_client):
    address = f"http://127.0.0.1:{_unused_port()}"
    with pytest.raises(CoreUnavailableError, match="after 3 attempts") as caught:
        await make_client(address).execute_workflow("orders")
    assert "ConnectError" in str(caught.value)


@pytest.mark.timeout(30)
async def test_hanging_core_hits_the_deadline_on_every_attempt(core, make_client, api):
    core.hang(True)
    started = time.monotonic()
    with pytest.raises(CoreUnavailableError) as caught:
        await make_client(url(core, api), timeout=0.3).get_execution_status("exec-1")
    elapsed = time.monotonic() - started
    assert core.call_counts() == {"GetExecutionStatus": 3}
    assert "after 3 attempts" in str(caught.value) and caught.value.code == ErrorCode.DEADLINE_EXCEEDED
    if api == "http":
        # httpx's read timeout or the attempt's whole-call timeout, whichever fires first: both 0.3 s.
        message = str(caught.value)
        assert (
            "ReadTimeout" in message or "WholeCallTimeout" in message
        ) and caught.value.transport_code is None
    else:
        assert caught.value.transport_code == grpc.StatusCode.DEADLINE_EXCEEDED
    # Three deadlines of 0.3 s, and no attempt waited much longer than its deadline.
    assert 0.85 < elapsed < 3.0
    core.hang(False)


@pytest.mark.timeout(30)
async def test_start_that_hits_the_deadline_is_not_sent_again(core, make_client, api):
    # The request reached Core before the answer stopped coming: it may have started it. (The
    # deadline leaves a loaded machine time to deliver the request: at 0.3 s it sometimes expired
    # before Core's handler counted it.)
    core.hang(True)
    with pytest.raises(CoreUnavailableError, match="after 1 attempt:"):
        await make_client(url(core, api), timeout=2.0).execute_workflow("orders")
    assert core.call_counts() == {"ExecuteWorkflow": 1}
    core.hang(False)


async def test_a_cancelled_call_leaves_the_client_usable(core):
    execution_id = core.start_execution("orders")
    async with ExecutionClient(core.http_url, retry=FAST_RETRY) as client:
        core.set_latency(2.0)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.get_execution_status(execution_id), 0.2)
        core.set_latency(0.0)
        assert (await client.get_execution_status(execution_id)).execution_id == execution_id
    # The cancelled call's connection was dropped mid-request, so the next one opened another.
    assert len(core.peers()) == 2
    assert core.call_counts() == {"GetExecutionStatus": 2}


async def test_slow_core_within_the_deadline_answers(core, make_client, api):
    core.set_latency(0.2)
    execution_id = core.start_execution("orders")
    status = await make_client(url(core, api), timeout=2.0).get_execution_status(execution_id)
    assert status.execution_id == execution_id
    assert core.call_counts() == {"GetExecutionStatus": 1}


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return write_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_core(core_factory, tls_files):
    return core_factory(tls=EmulatorTLS(tls_files.server.cert_pem, tls_files.server.key_pem))


@pytest.fixture
def mtls_core(core_factory, tls_files):
    server = tls_files.server
    return core_factory(tls=EmulatorTLS(server.cert_pem, server.key_pem, client_ca_pem=tls_files.ca.cert_pem))


async def test_https_with_the_ca_and_a_token(core_factory, tls_files, make_client):
    core = core_factory(tls=EmulatorTLS(tls_files.server.cert_pem, tls_files.server.key_pem), token=TOKEN)
    assert core.http_url.startswith("https://")
    execution_id = core.start_execution("orders")
    client = make_client(core.http_url, tls=TLSConfig(ca_cert_path=tls_files.ca_path), token=TOKEN)
    assert (await client.get_execution_status(execution_id)).execution_id == execution_id
    assert (await client.list_executions())[1] == 1
    assert all(peer.startswith("https://") for peer in core.peers()) and len(core.peers()) == 1


async def test_https_without_a_ca_fails_against_a_private_ca(tls_core, make_client):
    # https:// alone trusts the system roots, which never signed the test CA.
    with pytest.raises(CerebelumTLSError):
        await make_client(tls_core.http_url, retry=NO_PATIENCE).get_execution_status("exec-1")
    assert tls_core.call_counts() == {}


@pytest.mark.timeout(30)
async def test_wrong_ca_is_a_tls_error_after_one_attempt(tls_core, tls_files, make_client, api, caplog):
    address = tls_core.http_url if api == "http" else f"grpcs://{tls_core.address}"
    client = make_client(address, tls=TLSConfig(ca_cert_path=tls_files.other_ca_path), retry=NO_PATIENCE)
    logs = caplog.at_level(logging.WARNING, logger="cerebelum_provider.client")
    with logs, pytest.raises(CerebelumTLSError) as caught:
        await client.get_execution_status("exec-w")
    assert isinstance(caught.value, CoreUnavailableError)  # callers catching "unavailable" still catch it
    assert client.client.address in str(caught.value) and "CA bundle" in str(caught.value)
    assert tls_core.call_counts() == {}
    assert not [r for r in caplog.records if r.name == "cerebelum_provider.client"]  # no retry


async def test_mutual_tls(mtls_core, tls_files, make_client):
    tls = TLSConfig(
        ca_cert_path=tls_files.ca_path,
        client_cert_path=tls_files.client_cert_path,
        client_key_path=tls_files.client_key_path,
    )
    execution_id = mtls_core.start_execution("orders")
    client = make_client(mtls_core.http_url, tls=tls)
    assert (await client.get_execution_status(execution_id)).execution_id == execution_id
    assert mtls_core.call_counts() == {"GetExecutionStatus": 1}


async def test_mutual_tls_without_a_client_certificate_is_refused(mtls_core, tls_files, make_client):
    # With TLS 1.3 the client's handshake ends before the server checks the client's certificate:
    # the server then drops the connection, which looks like any dropped connection and is
    # retried (measured: RemoteProtocolError "Server disconnected without sending a response").
    client = make_client(mtls_core.http_url, tls=TLSConfig(ca_cert_path=tls_files.ca_path))
    with pytest.raises(CoreUnavailableError) as caught:
        await client.get_execution_status("exec-x")
    assert mtls_core.http_url in str(caught.value) and "after 3 attempts" in str(caught.value)
    assert mtls_core.call_counts() == {}


@pytest.fixture
def alerting_mtls_server(tls_files, tmp_path):
    """A scripted server requiring client certificates that, unlike the emulator's asyncio server,
    sends TLS 1.3's "certificate required" alert before it closes (as OpenSSL servers do)."""
    chain = tmp_path / "server-chain.pem"
    chain.write_bytes(tls_files.server.key_pem + b"\n" + tls_files.server.cert_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(chain))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=tls_files.ca.cert_pem.decode())
    with ScriptedRest(context) as server:
        server.default("*", Reply(200, {"executions": [], "total": 0}))
        yield server


@pytest.mark.timeout(30)
async def test_missing_client_certificate_alert_is_a_tls_error_after_one_attempt(
    alerting_mtls_server, tls_files, make_client
):
    client = make_client(
        alerting_mtls_server.url, tls=TLSConfig(ca_cert_path=tls_files.ca_path), retry=NO_PATIENCE
    )
    with pytest.raises(CerebelumTLSError, match="(?i)certificate") as caught:
        await client.list_executions()
    assert alerting_mtls_server.url in str(caught.value)
    assert alerting_mtls_server.count() == 0
    tls = TLSConfig(
        ca_cert_path=tls_files.ca_path,
        client_cert_path=tls_files.client_cert_path,
        client_key_path=tls_files.client_key_path,
    )
    assert await make_client(alerting_mtls_server.url, tls=tls).list_executions() == ([], 0, False)
    assert alerting_mtls_server.count() == 1


@pytest.fixture
def named_core(core_factory, tls_files):
    """Serves a certificate valid only for ``core.internal``, on 127.0.0.1."""
    named = tls_files.named_server
    return core_factory(tls=EmulatorTLS(named.cert_pem, named.key_pem))


async def test_server_name_override(named_core, tls_files, make_client):
    tls = TLSConfig(ca_cert_path=tls_files.ca_path, server_name_override="core.internal")
    execution_id = named_core.start_execution("orders")
    status = await make_client(named_core.http_url, tls=tls).get_execution_status(execution_id)
    assert status.execution_id == execution_id


@pytest.mark.timeout(30)
async def test_name_mismatch_is_a_tls_error_after_one_attempt(named_core, tls_files, make_client):
    client = make_client(
        named_core.http_url, tls=TLSConfig(ca_cert_path=tls_files.ca_path), retry=NO_PATIENCE
    )
    with pytest.raises(CerebelumTLSError):
        await client.get_execution_status("exec-m")
    assert named_core.call_counts() == {}


async def test_plain_http_client_against_an_https_core_is_unavailable(tls_core, make_client):
    plain = tls_core.http_url.replace("https://", "http://")
    with pytest.raises(CoreUnavailableError):
        await make_client(plain).get_execution_status("exec-1")
    assert tls_core.call_counts() == {}


# -- the connection pool ----------------------------------------------------------------------


async def test_one_connection_for_many_sequential_calls(core, make_client):
    execution_id = core.start_execution("orders")
    client = make_client(core.http_url)
    for _ in range(10):
        await client.get_execution_status(execution_id)
    await client.list_executions()
    await client.get_execution_events(execution_id)
    assert len(core.peers()) == 1
    assert core.call_counts()["GetExecutionStatus"] == 10


async def test_concurrent_rounds_reuse_the_pool(core, make_client):
    ids = [core.start_execution("orders") for _ in range(6)]
    # Every call of a round is in flight at once, so a round needs six connections.
    core.set_latency(0.1)
    client = make_client(core.http_url)
    first = await asyncio.gather(*(client.get_execution_status(i) for i in ids))
    after_first = core.peers()
    second = await asyncio.gather(*(client.get_execution_status(i) for i in ids))
    assert [s.execution_id for s in first] == [s.execution_id for s in second] == ids
    assert 1 <= len(after_first) <= 6
    assert core.peers() == after_first  # the second round opened no connection


async def test_calls_past_the_pool_wait_their_turn_outside_httpx(core, monkeypatch):
    # httpx's pool scans its whole queue each time a request starts or ends: the calls a pool cannot
    # send yet wait in the transport's own queue instead, so httpx never holds more than it sends.
    from cerebelum_provider.client import _http_transport

    monkeypatch.setattr(_http_transport, "POOL_CONNECTIONS", 4)
    monkeypatch.setattr(
        _http_transport, "POOL_LIMITS", httpx.Limits(max_connections=4, max_keepalive_connections=4)
    )
    ids = [core.start_execution("orders") for _ in range(40)]
    core.set_latency(0.02)
    async with ExecutionClient(core.http_url, retry=FAST_RETRY) as client:
        await client.get_execution_status(ids[0])
        httpcore_pool = client._transport._client._transport._pool
        queued_in_httpx: list[int] = []

        async def watch() -> None:
            while True:
                queued_in_httpx.append(len(httpcore_pool._requests))
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        statuses = await asyncio.gather(*(client.get_execution_status(i) for i in ids))
        watcher.cancel()
    assert [status.execution_id for status in statuses] == ids
    assert 0 < max(queued_in_httpx) <= 4
    assert len(core.peers()) <= 4
    assert core.call_counts()["GetExecutionStatus"] == 41  # none timed out or was sent twice


async def test_close_then_call_opens_a_new_pool(core, make_client):
    execution_id = core.start_execution("orders")
    client = make_client(core.http_url)
    await client.get_execution_status(execution_id)
    transport = client.client._transport
    first_pool = transport._client
    await client.close()
    assert transport._client is None
    await client.get_execution_status(execution_id)
    await client.get_execution_status(execution_id)
    assert transport._client is not None and transport._client is not first_pool
    assert len(core.peers()) == 2  # the closed pool's connection, and one for the new pool
    assert core.call_counts()["GetExecutionStatus"] == 3


def test_async_client_refuses_a_second_event_loop(core):
    execution_id = core.start_execution("orders")
    client = ExecutionClient(core.http_url)
    asyncio.run(client.get_execution_status(execution_id))
    with pytest.raises(RuntimeError, match="one client per loop"):
        asyncio.run(client.get_execution_status(execution_id))
    assert core.call_counts() == {"GetExecutionStatus": 1}


def test_sync_client_shares_one_pool_across_threads(core):
    from concurrent.futures import ThreadPoolExecutor

    ids = [core.start_execution("orders") for _ in range(8)]
    with SyncExecutionClient(core.http_url) as client, ThreadPoolExecutor(8) as pool:
        first = list(pool.map(client.get_execution_status, ids * 4))
        peers = core.peers()
        second = list(pool.map(client.get_execution_status, ids * 4))
    assert [s.execution_id for s in first + second] == ids * 8
    assert 1 <= len(peers) <= 8 and core.peers() == peers
    assert core.call_counts()["GetExecutionStatus"] == 64


async def test_async_context_manager_closes_the_pool(core):
    async with ExecutionClient(core.http_url, retry=FAST_RETRY) as client:
        await client.list_executions()
        transport = client._transport
        assert transport._client is not None
    assert transport._client is None
