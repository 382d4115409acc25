"""Clients for Cerebelum Core's gRPC API; no Airflow import anywhere in this package.

``ExecutionClient`` (asyncio, ``grpc.aio``) and ``SyncExecutionClient`` (blocking) share one
implementation of validation, request building and conversion (``_operations``, ``_convert``);
only their transports differ (``_transport``).

    from cerebelum_provider.client import ExecutionClient, RetryConfig, TLSConfig

    async with ExecutionClient(
        "grpcs://core.example.com",                  # TLS, port 443
        tls=TLSConfig(ca_cert_path="/etc/ssl/core-ca.pem"),
        token=os.environ["CEREBELUM_TOKEN"],         # sent as "authorization: Bearer ..."
        timeout=10.0,                                # deadline of every call attempt
        retry=RetryConfig(max_attempts=5),           # transient codes, see _transport.TRANSIENT_CODES
    ) as client:
        status = await client.get_execution_status(execution_id)   # ExecutionNotFoundError
        async for execution in client.iter_executions(status="FAILED"):
            await client.resume_execution(execution.execution_id)

``SyncExecutionClient`` takes the same arguments and has the same methods, blocking.
"""

from cerebelum_provider.client.aio import ExecutionClient
from cerebelum_provider.client.config import RetryConfig, TLSConfig, parse_core_url
from cerebelum_provider.client.sync import SyncExecutionClient

__all__ = ["ExecutionClient", "RetryConfig", "SyncExecutionClient", "TLSConfig", "parse_core_url"]
