"""Fixtures for the client tests: a scripted gRPC server and fast retry settings."""

from __future__ import annotations

import asyncio

import pytest

from cerebelum_provider.client import ExecutionClient, RetryConfig, SyncExecutionClient
from tests.client.scripted_core import ScriptedCore

#: Retries without waiting long: the tests count attempts, never time them.
FAST_RETRY = RetryConfig(max_attempts=3, initial_backoff=0.001, max_backoff=0.002)


@pytest.fixture
def scripted():
    """A started ScriptedCore (plaintext), stopped at teardown."""
    with ScriptedCore() as core:
        yield core


class AsyncFacade:
    """Gives both clients one awaitable surface, so every behaviour test runs against both.

    The blocking client is called for real, in a worker thread (``asyncio.to_thread``).
    """

    def __init__(self, client, *, blocking: bool) -> None:
        self.client = client
        self.blocking = blocking

    def __getattr__(self, name):
        method = getattr(self.client, name)
        if not self.blocking:
            return method

        async def call(*args, **kwargs):
            return await asyncio.to_thread(method, *args, **kwargs)

        return call

    async def collect(self, **kwargs):
        """Everything ``iter_executions(**kwargs)`` yields, as a list."""
        if self.blocking:
            return await asyncio.to_thread(lambda: list(self.client.iter_executions(**kwargs)))
        return [execution async for execution in self.client.iter_executions(**kwargs)]


@pytest.fixture(params=["async", "sync"])
async def make_client(request):
    """``make_client(address, **kwargs)`` -> an AsyncFacade over ExecutionClient or SyncExecutionClient.

    ``make_client(transport_for=factory)`` gives the client ``transport=factory(blocking)`` instead.
    """
    made = []

    def make(address=None, *, transport_for=None, **kwargs):
        if transport_for is not None:
            kwargs["transport"] = transport_for(request.param == "sync")
        else:
            kwargs.setdefault("retry", FAST_RETRY)
            kwargs.setdefault("timeout", 5.0)
            kwargs["core_url"] = address
        if request.param == "async":
            facade = AsyncFacade(ExecutionClient(**kwargs), blocking=False)
        else:
            facade = AsyncFacade(SyncExecutionClient(**kwargs), blocking=True)
        made.append(facade)
        return facade

    yield make
    for facade in made:
        await facade.close()
