"""Bad input is refused with a clear TypeError/ValueError before anything is sent."""

from __future__ import annotations

import pytest

from cerebelum_provider.client import (
    ExecutionClient,
    RetryConfig,
    SyncExecutionClient,
    TLSConfig,
    parse_core_url,
)
from cerebelum_provider.client.config import ClientSettings
from cerebelum_provider.models import ExecutionState

LONG_ID = "x" * 1025

# (method, args, kwargs, exception, words the message must contain)
BAD_CALLS = [
    ("get_execution_status", ("",), {}, ValueError, "execution_id"),
    ("get_execution_status", ("   ",), {}, ValueError, "execution_id"),
    ("get_execution_status", (None,), {}, TypeError, "execution_id"),
    ("get_execution_status", (42,), {}, TypeError, "execution_id"),
    ("get_execution_status", (LONG_ID,), {}, ValueError, "1024"),
    ("list_executions", (), {"limit": 0}, ValueError, "limit"),
    ("list_executions", (), {"limit": 101}, ValueError, "limit"),
    ("list_executions", (), {"limit": -5}, ValueError, "limit"),
    ("list_executions", (), {"limit": "10"}, TypeError, "limit"),
    ("list_executions", (), {"limit": True}, TypeError, "limit"),
    ("list_executions", (), {"limit": 10.0}, TypeError, "limit"),
    ("list_executions", (), {"offset": -1}, ValueError, "offset"),
    ("list_executions", (), {"offset": None}, TypeError, "offset"),
    ("list_executions", (), {"status": "BOGUS"}, ValueError, "BOGUS"),
    ("list_executions", (), {"status": 3}, TypeError, "status"),
    ("list_executions", (), {"workflow_name": ""}, ValueError, "workflow_name"),
    ("list_executions", (), {"workflow_name": 7}, TypeError, "workflow_name"),
    ("resume_execution", ("",), {}, ValueError, "execution_id"),
    ("resume_execution", ("e",), {"skip_completed_steps": "no"}, TypeError, "skip_completed_steps"),
    ("execute_workflow", ("",), {}, ValueError, "workflow_name"),
    ("execute_workflow", ("orders", ["not", "a", "dict"]), {}, TypeError, "inputs"),
    ("execute_workflow", ("orders", {"when": object()}), {}, TypeError, "inputs['when']"),
    ("execute_workflow", ("orders", {1: "x"}), {}, TypeError, "keys must be strings"),
    ("execute_workflow", ("orders",), {"tags": "one"}, TypeError, "tags"),
    ("execute_workflow", ("orders",), {"tags": ["a", 2]}, TypeError, "tags"),
    ("execute_workflow", ("orders",), {"timeout_ms": 0}, ValueError, "timeout_ms"),
    ("execute_workflow", ("orders",), {"correlation_id": ""}, ValueError, "correlation_id"),
]


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "error", "words"),
    BAD_CALLS,
    ids=[f"{call[0]}-{call[1]!r:.20}-{call[2]!r:.30}" for call in BAD_CALLS],
)
async def test_bad_call_is_refused_before_sending(scripted, make_client, method, args, kwargs, error, words):
    client = make_client(scripted.address)
    with pytest.raises(error) as caught:
        await getattr(client, method)(*args, **kwargs)
    assert words in str(caught.value)
    assert scripted.count() == 0
    assert client.client._transport._channel is None  # not even a connection was opened


BAD_ITERATIONS = [
    ({"page_size": 0}, ValueError, "page_size"),
    ({"page_size": 101}, ValueError, "page_size"),
    ({"page_size": "100"}, TypeError, "page_size"),
    ({"status": "NOPE"}, ValueError, "NOPE"),
    ({"workflow_name": ""}, ValueError, "workflow_name"),
]


@pytest.mark.parametrize(("kwargs", "error", "words"), BAD_ITERATIONS)
@pytest.mark.parametrize("client_class", [ExecutionClient, SyncExecutionClient])
def test_bad_iteration_is_refused_at_the_call(scripted, client_class, kwargs, error, words):
    client = client_class(scripted.address)
    with pytest.raises(error, match=words):
        client.iter_executions(**kwargs)
    assert scripted.count() == 0


@pytest.mark.parametrize(
    "status", [ExecutionState.FAILED, "FAILED", "EXECUTION_FAILED", "failed", " execution_failed "]
)
async def test_status_filter_accepts_enum_name_and_value(scripted, make_client, status):
    from cerebelum_provider.proto import worker_service_pb2 as pb

    scripted.default("ListExecutions", pb.ListExecutionsResponse())
    await make_client(scripted.address).list_executions(status=status)
    assert scripted.received()[0].request.status == pb.EXECUTION_FAILED


GOOD_URLS = [
    ("localhost:9090", "localhost:9090", False),
    ("core.example.com:1234", "core.example.com:1234", False),
    ("grpc://core:50051", "core:50051", False),
    ("grpcs://core:8443", "core:8443", True),
    ("grpcs://core", "core:443", True),
    ("GRPCS://core", "core:443", True),
    ("core", "core:9090", False),
    ("[::1]:9090", "[::1]:9090", False),
    ("  localhost:9090  ", "localhost:9090", False),
]


HTTP_URLS = [
    ("http://core:4001", "http://core:4001", False),
    ("http://core", "http://core:80", False),
    ("https://core", "https://core:443", True),
    ("HTTPS://core:8443/", "https://core:8443", True),
    ("https://gw.example.com/cerebelum/", "https://gw.example.com:443/cerebelum", True),
    ("http://[::1]:4001", "http://[::1]:4001", False),
]


@pytest.mark.parametrize(("url", "address", "tls"), HTTP_URLS)
def test_http_url_forms_pick_the_rest_api(url, address, tls):
    from cerebelum_provider.client import CoreAPI

    client = SyncExecutionClient(url)
    assert (client.api, client.address, client._settings.tls is not None) == (CoreAPI.HTTP, address, tls)


@pytest.mark.parametrize(("url", "tls"), [("http://core:1", True), ("https://core:1", False)])
def test_http_scheme_and_tls_argument_must_agree(url, tls):
    with pytest.raises(ValueError, match="https:// for TLS"):
        SyncExecutionClient(url, tls=tls)


@pytest.mark.parametrize(("url", "target", "tls"), GOOD_URLS)
def test_core_url_forms(url, target, tls):
    settings = ClientSettings.build(url, tls=None, token=None, timeout=10.0, retry=None)
    assert (settings.address.target, settings.tls is not None) == (target, tls)
    assert SyncExecutionClient(url).address == target


BAD_URLS = [
    ("ftp://core:80", "unknown scheme 'ftp'"),
    ("http://core:1/api?x=1", "query"),
    ("https://core:1#top", "fragment"),
    ("core:abc", "'abc'"),
    ("core:0", "1..65535"),
    ("core:65536", "1..65535"),
    ("core:", "empty port"),
    (":9090", "no host"),
    ("grpc://", "no host"),
    ("grpc://core:1/path", "path"),
    ("core:1?x=1", "query"),
    ("user:secret@core:1", "credentials"),
    ("", "host:port"),
    ("core 1:90", "host:port"),
]


@pytest.mark.parametrize(("url", "words"), BAD_URLS)
def test_malformed_core_url(url, words):
    with pytest.raises(ValueError) as caught:
        parse_core_url(url)
    assert words in str(caught.value)
    assert "secret" not in str(caught.value)


def test_core_url_must_be_a_string():
    with pytest.raises(TypeError, match="core_url"):
        ExecutionClient(9090)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": -1.0}, ValueError, "timeout"),
        ({"timeout": float("nan")}, ValueError, "timeout"),
        ({"timeout": "10"}, TypeError, "timeout"),
        ({"token": 123}, TypeError, "token"),
        ({"token": ""}, ValueError, "token"),
        ({"token": "abc\n"}, ValueError, "token"),
        ({"retry": {"max_attempts": 2}}, TypeError, "retry"),
        ({"tls": "yes"}, TypeError, "tls"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        ExecutionClient("localhost:9090", **kwargs)


def test_scheme_and_tls_argument_must_agree():
    with pytest.raises(ValueError, match="grpcs://"):
        ExecutionClient("grpcs://core:443", tls=False)
    with pytest.raises(ValueError, match="grpc://"):
        ExecutionClient("grpc://core:1", tls=TLSConfig())


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_attempts": 0}, ValueError),
        ({"max_attempts": 1.5}, TypeError),
        ({"initial_backoff": -1}, ValueError),
        ({"max_backoff": float("inf")}, ValueError),
        ({"multiplier": 0.5}, ValueError),
    ],
)
def test_bad_retry_config(kwargs, error):
    with pytest.raises(error):
        RetryConfig(**kwargs)


@pytest.mark.parametrize("client_class", [ExecutionClient, SyncExecutionClient])
def test_repr_never_shows_the_token(client_class):
    client = client_class(
        "grpcs://core", token="very-secret-token", tls=TLSConfig(server_name_override="core")
    )
    assert "very-secret-token" not in repr(client)
    assert "very-secret-token" not in repr(client._settings)
    assert "very-secret-token" not in repr(vars(client))
    assert "core:443" in repr(client)


def test_error_messages_shorten_huge_bad_values(scripted):
    huge = list(range(100_000))
    with pytest.raises(TypeError) as caught:
        SyncExecutionClient(scripted.address).execute_workflow("orders", huge)
    assert len(str(caught.value)) < 300 and "..." in str(caught.value)
