"""Raw gRPC stubs and a raw HTTP client on the ``core`` emulator, for tests that pin the wire behaviour."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest

from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc


@pytest.fixture
def stub(core) -> Iterator[pb_grpc.WorkerServiceStub]:
    """A blocking WorkerServiceStub over an insecure channel to ``core``."""
    with grpc.insecure_channel(core.address) as channel:
        yield pb_grpc.WorkerServiceStub(channel)


@pytest.fixture
def http(core) -> Iterator[httpx.Client]:
    """An httpx client on ``core``'s REST API (no token)."""
    with httpx.Client(base_url=core.http_url, timeout=5) as client:
        yield client
