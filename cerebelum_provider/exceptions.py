"""One error hierarchy for everything that talks to Cerebelum Core.

Callers branch on the type, never on message text. Every error knows the Core address it was
talking to and, where there is one, the execution id; messages never contain credentials.
This module imports no grpc: the status code is kept as given (a ``grpc.StatusCode`` over gRPC, the
HTTP status as an ``int`` over Core's REST API).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import grpc

#: What a transport said about a failed call: gRPC's status code, or the HTTP status.
ErrorCode = Union["grpc.StatusCode", int]


class CerebelumError(Exception):
    """Base class of every error this package raises about Core."""

    def __init__(
        self,
        message: str,
        *,
        core_address: str | None = None,
        execution_id: str | None = None,
        code: ErrorCode | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.core_address = core_address
        self.execution_id = execution_id
        #: What Core's transport said: a ``grpc.StatusCode`` over gRPC, the HTTP status (``int``) over
        #: REST, or None when the error is not a transport answer.
        self.code: ErrorCode | None = code


class ExecutionNotFoundError(CerebelumError):
    """Core knows no execution with this id (its OK-with-``not_found`` answer, or NOT_FOUND)."""


class CoreUnavailableError(CerebelumError):
    """Core could not be reached or kept failing transiently after the retry budget was spent."""


class CerebelumAuthError(CerebelumError):
    """The proxy in front of Core refused the credentials (UNAUTHENTICATED, PERMISSION_DENIED).

    Never retried: the same token would be refused again.
    """


class CerebelumTLSError(CoreUnavailableError):
    """The TLS handshake with Core failed (wrong CA, bad client certificate, name mismatch).

    A subclass of :class:`CoreUnavailableError` because gRPC reports it as UNAVAILABLE, but it is
    not retried: a handshake that failed for a certificate fails again.
    """


class CerebelumRPCError(CerebelumError):
    """Any other failure of a call; ``code`` holds the gRPC status code or the HTTP status."""


class CoreAPIMismatchError(CerebelumRPCError):
    """The address answers the other of Core's two APIs, or no Core API at all: a gRPC client at
    Core's HTTP port, or an HTTP client at its gRPC port.

    Never retried, and final for a task: the same address answers the same way until the
    connection's ``api`` or port is changed, which the message names.
    """


class CoreInternalError(CerebelumRPCError):
    """Core crashed answering the call (gRPC ``UNKNOWN "Internal Server Error"``, HTTP 500).

    Not retried: the same call crashes again. The message says what is known about the crash
    (the released Cores fail every gRPC status query on an existing execution; the HTTP API works).
    """


class RequestRefusedError(CerebelumError):
    """Core refused a request for what the execution is now (e.g. approving one that waits for
    no approval: HTTP 422); ``code`` holds the HTTP status."""


class UnsupportedOperationError(CerebelumError):
    """The call exists only on Core's other API (stop, approve and events are REST-only).

    Raised before anything is sent.
    """


class RerunRefusedError(CerebelumError):
    """An execution the client will not rerun: it is itself a rerun, or its event log does not say
    which workflow and inputs it was started with. Raised before anything is started."""


class WorkflowStartError(CerebelumError):
    """Core refused to start a workflow (it answered ``status="failed"``, e.g. an unknown workflow)."""


class ExecutionNotResumedError(CerebelumError):
    """A resume left the execution as it was: Core refused it (``failed_to_resume``), or the
    execution was still FAILED when read back after Core's answer.

    Not retried: the released Core answers the same for the same execution until it restarts.
    """
