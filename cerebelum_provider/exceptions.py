"""One error hierarchy for everything that talks to Cerebelum Core.

Callers branch on the type, or on :class:`ErrorCode`, never on message text. Every error knows the
Core address it was talking to and, where there is one, the execution id; messages never contain
credentials. ``code`` is the same :class:`ErrorCode` whichever API answered; ``transport_code`` keeps
what the wire said (a ``grpc.StatusCode`` over gRPC, the HTTP status as an ``int`` over Core's REST
API) for logs. This module imports no grpc: gRPC statuses are mapped by name.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Union

if TYPE_CHECKING:
    import grpc


class ErrorCode(str, enum.Enum):
    """Google's canonical error codes: what a failed call means, the same over gRPC and REST."""

    OK = "OK"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"
    UNAVAILABLE = "UNAVAILABLE"
    DATA_LOSS = "DATA_LOSS"
    UNAUTHENTICATED = "UNAUTHENTICATED"


#: What a transport said about a failed call: gRPC's status code, or the HTTP status.
TransportCode = Union["grpc.StatusCode", int]

#: gRPC status name (``grpc.StatusCode.X.name``) -> the code; gRPC's statuses are the canonical codes.
GRPC_ERROR_CODES: Mapping[str, ErrorCode] = MappingProxyType({code.value: code for code in ErrorCode})

#: HTTP status -> the code, after Google's HTTP mapping (google/rpc/code.proto). 409 is ABORTED, not
#: ALREADY_EXISTS: Core creates nothing under a name the client chooses (every start gets a new id),
#: so a 409 can only be a conflict with the resource's current state, which is ABORTED's meaning.
HTTP_ERROR_CODES: Mapping[int, ErrorCode] = MappingProxyType(
    {
        400: ErrorCode.INVALID_ARGUMENT,
        401: ErrorCode.UNAUTHENTICATED,
        403: ErrorCode.PERMISSION_DENIED,
        404: ErrorCode.NOT_FOUND,
        409: ErrorCode.ABORTED,
        422: ErrorCode.FAILED_PRECONDITION,
        429: ErrorCode.RESOURCE_EXHAUSTED,
        499: ErrorCode.CANCELLED,
        500: ErrorCode.INTERNAL,
        501: ErrorCode.UNIMPLEMENTED,
        502: ErrorCode.UNAVAILABLE,
        503: ErrorCode.UNAVAILABLE,
        504: ErrorCode.DEADLINE_EXCEEDED,
    }
)


def error_code(transport_code: TransportCode) -> ErrorCode:
    """The :class:`ErrorCode` for what a transport said: a ``grpc.StatusCode`` or an HTTP status.

    An HTTP status not in ``HTTP_ERROR_CODES``: another 4xx is FAILED_PRECONDITION (the client
    validates its requests before sending, so a refusal it cannot name is about Core's or a gateway's
    state), another 5xx INTERNAL, and anything else (a 2xx or 3xx that is an error) UNKNOWN.
    """
    if isinstance(transport_code, int):
        if transport_code in HTTP_ERROR_CODES:
            return HTTP_ERROR_CODES[transport_code]
        if 400 <= transport_code < 500:
            return ErrorCode.FAILED_PRECONDITION
        if 500 <= transport_code < 600:
            return ErrorCode.INTERNAL
        return ErrorCode.UNKNOWN
    return GRPC_ERROR_CODES.get(transport_code.name, ErrorCode.UNKNOWN)


class CerebelumError(Exception):
    """Base class of every error this package raises about Core."""

    #: The code of an error whose meaning is its class, when no transport status says more.
    default_code: ClassVar[ErrorCode | None] = None

    def __init__(
        self,
        message: str,
        *,
        core_address: str | None = None,
        execution_id: str | None = None,
        transport_code: TransportCode | None = None,
        code: ErrorCode | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.core_address = core_address
        self.execution_id = execution_id
        #: What Core's transport said: a ``grpc.StatusCode`` over gRPC, the HTTP status (``int``) over
        #: REST, or None when no status was answered (a refused connection, Core's OK-with-not_found).
        self.transport_code: TransportCode | None = transport_code
        if code is None and transport_code is not None:
            code = error_code(transport_code)
        #: What the failure means, the same on both APIs: ``code`` when given, else ``transport_code``
        #: mapped by :func:`error_code`, else the class's ``default_code`` (None when it has none).
        self.code: ErrorCode | None = code if code is not None else self.default_code


class ExecutionNotFoundError(CerebelumError):
    """Core knows no execution with this id (its OK-with-``not_found`` answer, or NOT_FOUND)."""

    default_code = ErrorCode.NOT_FOUND


class CoreUnavailableError(CerebelumError):
    """Core could not be reached or kept failing transiently after the retry budget was spent."""


class CoreBusyError(CoreUnavailableError):
    """Core answered a status read with HTTP 500 and Phoenix's bare ``Internal Server Error`` body:
    what the released Core answers while one of its engines stays busy past 5 s (its status read
    asks every engine in turn).

    Retried like an outage, and waits ride it out within ``unavailable_timeout``; only status reads
    are judged so, every other 500 is a :class:`CoreInternalError`. ``code`` is UNAVAILABLE,
    ``transport_code`` 500.
    """

    default_code = ErrorCode.UNAVAILABLE


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
    """Any other failure of a call; ``code`` says what it means, ``transport_code`` what the wire said."""


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
    ``code`` is INTERNAL on both APIs (or what another 5xx maps to); ``transport_code`` tells them apart.
    """


class RequestRefusedError(CerebelumError):
    """Core refused a request for what the execution is now (e.g. approving one that waits for
    no approval: HTTP 422, FAILED_PRECONDITION); ``transport_code`` holds the HTTP status."""


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
