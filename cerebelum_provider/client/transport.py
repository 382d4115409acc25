"""What a transport is: the seam between the clients and a wire to Cerebelum Core.

A client builds every call as an :class:`Operation` (arguments validated, nothing sent yet) and
hands it to its transport's ``call``. A transport must:

- send one of the operation's forms (``operation.grpc()``, a :class:`GrpcCall`, or
  ``operation.http()``, an :class:`HttpCall`; ``api`` says which) and return
  ``form.convert(answer, address)``, the converter's errors included;
- map every failure onto ``cerebelum_provider.exceptions`` (``CoreUnavailableError``,
  ``CerebelumAuthError``, ...), naming ``address``;
- retry what it deems transient: retries are its business, the client never retries;
- keep its own address, credentials and settings, and release its connections on ``close()``.

``ExecutionClient(transport=...)`` takes an :class:`AsyncTransport`, ``SyncExecutionClient``
a :class:`SyncTransport`; the gRPC and HTTP transports the clients build themselves are both.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

from cerebelum_provider.client._operations import GrpcCall, HttpAnswer, HttpCall, Operation
from cerebelum_provider.client.config import CoreAPI

__all__ = [
    "AsyncTransport",
    "CoreAPI",
    "GrpcCall",
    "HttpAnswer",
    "HttpCall",
    "Operation",
    "SyncTransport",
]

T = TypeVar("T")


@runtime_checkable
class AsyncTransport(Protocol):
    """Sends operations for ``ExecutionClient``; see the module's docstring for the contract."""

    @property
    def api(self) -> CoreAPI:
        """Which form of an operation this transport sends (``CoreAPI.GRPC`` or ``CoreAPI.HTTP``)."""
        ...

    @property
    def address(self) -> str:
        """Where it sends, as error messages name it."""
        ...

    async def call(self, operation: Operation[T]) -> T:
        """Send ``operation`` and return its converted answer, or raise a ``CerebelumError``."""
        ...

    async def close(self) -> None:
        """Release connections; a later call may open new ones."""
        ...


@runtime_checkable
class SyncTransport(Protocol):
    """Sends operations for ``SyncExecutionClient``, blocking; see the module's docstring."""

    @property
    def api(self) -> CoreAPI:
        """Which form of an operation this transport sends (``CoreAPI.GRPC`` or ``CoreAPI.HTTP``)."""
        ...

    @property
    def address(self) -> str:
        """Where it sends, as error messages name it."""
        ...

    def call(self, operation: Operation[T]) -> T:
        """Send ``operation`` and return its converted answer, or raise a ``CerebelumError``."""
        ...

    def close(self) -> None:
        """Release connections; a later call may open new ones."""
        ...
