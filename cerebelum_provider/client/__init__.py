"""Clients for Cerebelum Core's gRPC API; no Airflow import anywhere in this package.

``ExecutionClient`` (asyncio, ``grpc.aio``) and ``SyncExecutionClient`` (blocking) share one
implementation of validation, request building and conversion (``_operations``, ``_convert``);
only their transports differ (``_transport``).
"""

from cerebelum_provider.client.aio import ExecutionClient
from cerebelum_provider.client.config import RetryConfig, TLSConfig, parse_core_url
from cerebelum_provider.client.sync import SyncExecutionClient

__all__ = ["ExecutionClient", "RetryConfig", "SyncExecutionClient", "TLSConfig", "parse_core_url"]
