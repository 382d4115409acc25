"""Faults over REST: the bearer token, TLS and mTLS, injected failures mapped to HTTP, latency, hangs,
and the counters (calls under RPC names, one peer per TCP connection)."""

from __future__ import annotations

import ssl
import time

import grpc
import httpx
import pytest

from cerebelum_provider.emulator import EmulatorTLS
from tests.emulator.certs import make_tls_material

EXECUTIONS = "/api/v1/executions"
TOKEN = "s3cret-token-value"

# Every execution route, with the name it is counted under.
ROUTES = [
    ("GET", EXECUTIONS, "ListExecutions"),
    ("POST", EXECUTIONS, "ExecuteWorkflow"),
    ("GET", EXECUTIONS + "/x", "GetExecutionStatus"),
    ("GET", EXECUTIONS + "/x/events", "GetExecutionEvents"),
    ("POST", EXECUTIONS + "/x/resume", "ResumeExecution"),
    ("POST", EXECUTIONS + "/x/stop", "StopExecution"),
    ("POST", EXECUTIONS + "/x/approve", "ApproveExecution"),
]


@pytest.mark.parametrize(("method", "path", "rpc"), ROUTES)
def test_every_execution_route_needs_the_bearer_token_when_one_is_set(core_factory, method, path, rpc):
    locked = core_factory(token=TOKEN)
    with httpx.Client(base_url=locked.http_url, timeout=5) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            answer = client.request(method, path, headers=headers, json={"workflow": "orders"})
            assert (answer.status_code, answer.json()) == (401, {"error": "unauthorized"})
        answer = client.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"}, json={})
        assert answer.status_code != 401
    assert locked.call_counts() == {rpc: 4}
    assert locked.execution_ids() == []


def test_without_a_token_the_routes_are_open(http):
    assert http.get(EXECUTIONS).status_code == 200


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
    ],
)
def test_injected_failures_map_to_http_and_change_nothing(core, http, code, status):
    execution_id = core.start_execution("orders", fail_at=0)
    core.advance(1)
    core.fail_next(1, code, rpcs=["ResumeExecution"])
    assert http.get(f"{EXECUTIONS}/{execution_id}").status_code == 200
    failed = http.post(f"{EXECUTIONS}/{execution_id}/resume")
    assert failed.status_code == status
    assert core.resume_count(execution_id) == 0
    if status == 429:
        assert failed.headers["retry-after"] == "1"
        assert failed.json() == {"error": "rate_limit_exceeded", "limit": 1000}
    if status == 500:
        assert failed.json() == {"errors": {"detail": "Internal Server Error"}}
    assert http.post(f"{EXECUTIONS}/{execution_id}/resume").status_code == 200
    assert core.call_counts() == {"GetExecutionStatus": 1, "ResumeExecution": 2}


def test_fail_next_can_target_rest_only_calls(core, http):
    execution_id = core.start_execution("orders")
    core.fail_next(1, grpc.StatusCode.UNAVAILABLE, rpcs="StopExecution")
    assert http.get(f"{EXECUTIONS}/{execution_id}").status_code == 200
    assert http.post(f"{EXECUTIONS}/{execution_id}/stop").status_code == 503
    assert not core.stopped(execution_id)
    assert http.post(f"{EXECUTIONS}/{execution_id}/stop").status_code == 200
    with pytest.raises(ValueError, match="StopExecutions"):
        core.fail_next(1, rpcs="StopExecutions")


def test_failure_rate_applies_to_rest_calls(core, http):
    core.set_failure_rate(1.0, grpc.StatusCode.UNAVAILABLE, rpcs=["ListExecutions"], seed=1)
    assert http.get(EXECUTIONS).status_code == 503
    assert http.get(f"{EXECUTIONS}/x").status_code == 404
    core.set_failure_rate(0)
    assert http.get(EXECUTIONS).status_code == 200


def test_latency_delays_rest_calls(core, http):
    core.set_latency(0.3)
    started = time.monotonic()
    assert http.get(EXECUTIONS).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_a_hang_never_answers_until_the_client_gives_up_and_the_emulator_still_stops(core_factory):
    hanging = core_factory()
    hanging.hang()
    with httpx.Client(base_url=hanging.http_url, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get(EXECUTIONS)
        hanging.hang(False)
        assert client.get(EXECUTIONS).status_code == 200
    started = time.monotonic()
    hanging.hang()
    with httpx.Client(base_url=hanging.http_url, timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
        client.get(EXECUTIONS)
    hanging.stop()
    assert time.monotonic() - started < 5


def test_peers_has_one_entry_per_rest_connection(core):
    with httpx.Client(base_url=core.http_url, timeout=5) as pooled:
        for _ in range(5):
            assert pooled.get(EXECUTIONS).status_code == 200
    assert len(core.peers()) == 1
    (peer,) = core.peers()
    assert peer.startswith("http://127.0.0.1:")
    for _ in range(2):
        with httpx.Client(base_url=core.http_url, timeout=5) as fresh:
            fresh.get(EXECUTIONS)
    assert len(core.peers()) == 3


# TLS ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def material():
    return make_tls_material()


def client_context(material, tmp_path, *, with_client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=material.ca_pem.decode())
    if with_client_cert:
        chain = tmp_path / "client.pem"
        chain.write_bytes(material.client_key_pem + b"\n" + material.client_cert_pem)
        context.load_cert_chain(chain)
    return context


def test_tls_serves_https_with_the_same_material(core_factory, material, tmp_path):
    secure = core_factory(tls=EmulatorTLS(material.server_cert_pem, material.server_key_pem))
    assert secure.http_url.startswith("https://127.0.0.1:")
    verify = client_context(material, tmp_path, with_client_cert=False)
    with httpx.Client(base_url=secure.http_url, verify=verify, timeout=5) as client:
        assert client.get(EXECUTIONS).status_code == 200
    plain = secure.http_url.replace("https://", "http://")
    with httpx.Client(base_url=plain, timeout=5) as client, pytest.raises(httpx.HTTPError):
        client.get(EXECUTIONS)
    (peer,) = secure.peers()
    assert peer.startswith("https://")


def test_mtls_refuses_a_client_without_a_certificate(core_factory, material, tmp_path):
    secure = core_factory(
        tls=EmulatorTLS(material.server_cert_pem, material.server_key_pem, client_ca_pem=material.ca_pem)
    )
    anonymous = client_context(material, tmp_path, with_client_cert=False)
    with httpx.Client(base_url=secure.http_url, verify=anonymous, timeout=5) as client:
        with pytest.raises(httpx.HTTPError):
            client.get(EXECUTIONS)
    known = client_context(material, tmp_path, with_client_cert=True)
    with httpx.Client(base_url=secure.http_url, verify=known, timeout=5) as client:
        assert client.get(EXECUTIONS).status_code == 200
    assert secure.call_counts() == {"ListExecutions": 1}


def test_http_port_none_serves_no_rest(core_factory):
    grpc_only = core_factory(http_port=None)
    assert grpc_only.http_port is None and grpc_only.http_url is None
    with pytest.raises(ValueError, match="http_port"):
        core_factory(http_port=70000)


def test_a_restarted_emulator_serves_rest_on_the_same_port(core_factory):
    emulator = core_factory()
    url = emulator.http_url
    execution_id = emulator.start_execution("orders")
    emulator.stop()
    with pytest.raises(httpx.ConnectError), httpx.Client(timeout=2) as client:
        client.get(url + EXECUTIONS)
    emulator.start()
    assert emulator.http_url == url
    with httpx.Client(base_url=url, timeout=5) as client:
        assert client.get(f"{EXECUTIONS}/{execution_id}").json()["state"] == "running"


def test_sequential_calls_on_one_connection_do_not_wait_for_delayed_acks(core, http):
    # With Nagle on, each response's body waits ~40 ms for the ACK of its headers: 10 calls >= 0.4 s.
    http.get("/health")
    started = time.monotonic()
    for _ in range(10):
        assert http.get("/health").status_code == 200
    assert time.monotonic() - started < 0.35
