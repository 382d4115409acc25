"""The emulator's rate limit, as Core's per-organisation limiter answers over REST (measured on
release be56c90, bench/RESULTS.md "Real Core": 1,000 requests a calendar minute, then 429 with
``retry-after: 60`` and ``{"error": "rate_limit_exceeded", "limit": 1000}`` until the minute turns)."""

from __future__ import annotations

import httpx
import pytest

from cerebelum_provider.client import ExecutionClient, RetryConfig, _retry
from cerebelum_provider.emulator import CoreEmulator
from cerebelum_provider.emulator.__main__ import main as emulator_main

EXECUTIONS = "/api/v1/executions"


def test_calls_past_the_limit_get_cores_429_until_the_window_turns(core_factory):
    # An hour-long window: the test's few calls never straddle two windows.
    limited = core_factory()
    limited.set_rate_limit(5, window_seconds=3600)
    execution_id = limited.start_execution("orders")
    with httpx.Client(base_url=limited.http_url, timeout=5) as http:
        answers = [http.get(f"{EXECUTIONS}/{execution_id}") for _ in range(8)]
        refused_list = http.get(EXECUTIONS)
    assert [answer.status_code for answer in answers] == [200] * 5 + [429] * 3
    refused = answers[-1]
    assert refused.headers["retry-after"] == "3600"
    assert refused.json() == {"error": "rate_limit_exceeded", "limit": 5}
    assert refused_list.status_code == 429
    assert limited.rate_limited_count() == 4
    # Refused calls are received calls: counted under their name like any other.
    assert limited.call_counts() == {"GetExecutionStatus": 8, "ListExecutions": 1}


async def test_grpc_calls_and_open_routes_are_not_limited(core_factory):
    limited = core_factory()
    limited.set_rate_limit(1, window_seconds=3600)
    execution_id = limited.start_execution("orders")
    with httpx.Client(base_url=limited.http_url, timeout=5) as http:
        assert [http.get("/health").status_code for _ in range(3)] == [200] * 3
    async with ExecutionClient(limited.address, timeout=5) as client:
        states = [(await client.get_execution_status(execution_id)).status.name for _ in range(3)]
    assert states == ["RUNNING"] * 3
    assert limited.rate_limited_count() == 0


async def test_the_client_waits_out_the_window_and_every_call_answers(core_factory, monkeypatch):
    limited = core_factory()
    # Core's limiter with a one-second window and the client's window wait without its jitter,
    # so the wait is short.
    limited.set_rate_limit(2, window_seconds=1)
    monkeypatch.setattr(_retry, "RATE_LIMIT_JITTER", (0.0, 0.01))
    execution_id = limited.start_execution("orders")
    retry = RetryConfig(max_attempts=2, initial_backoff=0.001, max_backoff=0.002)
    async with ExecutionClient(limited.http_url, retry=retry, timeout=5) as client:
        states = [(await client.get_execution_status(execution_id)).status.name for _ in range(5)]
    assert states == ["RUNNING"] * 5
    assert limited.rate_limited_count() >= 1
    answered = limited.call_counts()["GetExecutionStatus"] - limited.rate_limited_count()
    assert answered == 5


def test_a_window_that_never_turns_lets_limit_calls_through_then_refuses_as_core(core_factory):
    limited = core_factory()
    limited.set_rate_limit(2, window_seconds=None)
    with httpx.Client(base_url=limited.http_url, timeout=5) as http:
        answers = [http.get(EXECUTIONS) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 429, 429]
    # Core's own advice: its window is a calendar minute.
    assert answers[-1].headers["retry-after"] == "60"
    assert answers[-1].json() == {"error": "rate_limit_exceeded", "limit": 2}
    assert limited.rate_limited_count() == 2


def test_switching_it_off_lets_every_call_through(core_factory):
    limited = core_factory()
    limited.set_rate_limit(1, window_seconds=3600)
    with httpx.Client(base_url=limited.http_url, timeout=5) as http:
        assert [http.get(EXECUTIONS).status_code for _ in range(2)] == [200, 429]
        limited.set_rate_limit(None)
        assert [http.get(EXECUTIONS).status_code for _ in range(3)] == [200] * 3


@pytest.mark.parametrize(
    ("limit", "window", "message"),
    [
        (0, 60, "rate limit must be a whole number of calls >= 1 or None, got 0"),
        (1.5, 60, "rate limit must be a whole number of calls >= 1 or None, got 1.5"),
        (True, 60, "rate limit must be a whole number of calls >= 1 or None, got True"),
        (10, 0, "rate limit window must be a number of seconds > 0 or None, got 0"),
        (10, float("inf"), "rate limit window must be a number of seconds > 0 or None, got inf"),
    ],
)
def test_bad_settings_are_refused_naming_the_value(limit, window, message):
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.") + "$"):
        CoreEmulator(http_port=None).set_rate_limit(limit, window)
    with pytest.raises(ValueError, match="rate limit must be"):
        CoreEmulator(http_port=None, rate_limit=0)


def test_the_command_line_refuses_a_bad_rate_limit_naming_it():
    expected = "^--rate-limit must be a whole number of requests a minute >= 1, got 0$"
    with pytest.raises(SystemExit, match=expected):
        emulator_main(["serve", "--port", "0", "--rate-limit", "0"])
