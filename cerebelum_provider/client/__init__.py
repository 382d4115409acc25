"""Clients for Cerebelum Core, over its gRPC or its REST API; no Airflow import in this package.

``ExecutionClient`` (asyncio) and ``SyncExecutionClient`` (blocking) share one implementation of
validation, request building and conversion (``_operations``, with ``_convert`` for gRPC answers
and ``_rest_convert`` for REST answers); only their transports differ, and each API has its own
(``_grpc_transport`` on grpc/grpc.aio, ``_http_transport`` on httpx), picked by the address's
scheme: ``http://``/``https://`` for REST, ``grpc://``/``grpcs://`` or ``host:port`` for gRPC.
``transport=`` gives a client any other transport (``transport`` declares what one must do).

    from cerebelum_provider.client import ExecutionClient, RetryConfig, TLSConfig

    async with ExecutionClient(
        "grpcs://core.example.com",                  # TLS, port 443
        tls=TLSConfig(ca_cert_path="/etc/ssl/core-ca.pem"),
        token=os.environ["CEREBELUM_TOKEN"],         # sent as "authorization: Bearer ..."
        timeout=10.0,                                # deadline of every call attempt, whole
        retry=RetryConfig(max_attempts=5),           # transient failures, see _grpc_transport/_http_transport
    ) as client:
        status = await client.get_execution_status(execution_id)   # ExecutionNotFoundError
        async for execution in client.iter_executions(status="FAILED"):
            await client.resume_execution(execution.execution_id)

``SyncExecutionClient`` takes the same arguments and has the same methods, blocking.
``with calls_end_within(seconds):`` lets no call made inside it retry, or wait for Core's rate
limiter, past ``seconds`` from now; ``with calls_without_deadline():`` lifts it for calls made on
behalf of many callers.
"""

from cerebelum_provider.client._deadline import calls_end_within, calls_without_deadline
from cerebelum_provider.client._rerun import RERUN_OF_INPUT
from cerebelum_provider.client.aio import ExecutionClient
from cerebelum_provider.client.config import CoreAPI, RetryConfig, TLSConfig, parse_core_url
from cerebelum_provider.client.sync import SyncExecutionClient

__all__ = [
    "RERUN_OF_INPUT",
    "CoreAPI",
    "ExecutionClient",
    "RetryConfig",
    "SyncExecutionClient",
    "TLSConfig",
    "calls_end_within",
    "calls_without_deadline",
    "parse_core_url",
]
