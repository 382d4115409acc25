"""The one retry policy: which failures are retried, and the backoff it computes."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from tenacity import RetryCallState, Retrying

from cerebelum_provider.client import RetryConfig
from cerebelum_provider.client._operations import execute_workflow, get_execution_status
from cerebelum_provider.client._grpc_transport import is_retryable, is_tls_failure, retry_policy


def rpc_error(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "retried"),
    [
        (grpc.StatusCode.UNAVAILABLE, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, True),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, True),
        (grpc.StatusCode.CANCELLED, True),
        (grpc.StatusCode.UNAUTHENTICATED, False),
        (grpc.StatusCode.PERMISSION_DENIED, False),
        (grpc.StatusCode.NOT_FOUND, False),
        (grpc.StatusCode.INTERNAL, False),
        (grpc.StatusCode.INVALID_ARGUMENT, False),
        (grpc.StatusCode.UNKNOWN, False),
    ],
)
def test_only_transient_codes_are_retried(code, retried):
    assert is_retryable(rpc_error(code, "Socket closed")) is retried


@pytest.mark.parametrize(
    "details",
    [
        "Ssl handshake failed (TSI_PROTOCOL_FAILURE): CERTIFICATE_VERIFY_FAILED",
        "Custom verification check failed with error: UNAUTHENTICATED: Hostname Verification Check failed.",
    ],
)
def test_tls_handshake_failures_are_not_retried(details):
    error = rpc_error(grpc.StatusCode.UNAVAILABLE, details)
    assert is_tls_failure(error) and not is_retryable(error)


def test_host_names_that_look_like_tls_do_not_stop_retries():
    error = rpc_error(grpc.StatusCode.UNAVAILABLE, "DNS resolution failed for tls-ssl-gw.example:443")
    assert not is_tls_failure(error) and is_retryable(error)


def test_non_grpc_errors_are_not_retried():
    assert not is_retryable(ValueError("boom"))


def _waits(config: RetryConfig, attempts: int) -> list[float]:
    wait = retry_policy(config, get_execution_status("x"), "core:1")["wait"]
    waits = []
    for number in range(1, attempts + 1):
        state = RetryCallState(Retrying(), None, (), {})
        state.attempt_number = number
        waits.append(wait(state))
    return waits


def test_backoff_is_exponential_with_bounded_jitter_and_capped():
    config = RetryConfig(max_attempts=8, initial_backoff=0.1, max_backoff=1.0, multiplier=2.0)
    for _ in range(20):
        for number, wait in enumerate(_waits(config, 7), start=1):
            base = min(0.1 * 2.0 ** (number - 1), 1.0)
            assert base <= wait <= base + 0.1


def test_attempt_budget():
    stop = retry_policy(RetryConfig(max_attempts=4), get_execution_status("x"), "core:1")["stop"]
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = 3
    assert not stop(state)
    state.attempt_number = 4
    assert stop(state)


def test_starting_a_workflow_gets_one_attempt_only():
    stop = retry_policy(RetryConfig(max_attempts=5), execute_workflow("orders"), "core:1")["stop"]
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = 1
    assert stop(state)
