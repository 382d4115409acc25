"""The one mapping from what a transport said (a gRPC status, an HTTP status) to ``ErrorCode``.

The statuses Core and its gateways really answer are proven end to end in test_client_scripted.py,
test_client_http_scripted.py and test_client_http_transport.py; this covers the rest of the table.
"""

from __future__ import annotations

import grpc
import pytest

from cerebelum_provider import ErrorCode
from cerebelum_provider.exceptions import CerebelumRPCError, error_code


@pytest.mark.parametrize("status", list(grpc.StatusCode), ids=lambda status: status.name)
def test_every_grpc_status_has_its_namesake(status):
    assert error_code(status) is ErrorCode[status.name]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, ErrorCode.INVALID_ARGUMENT),
        (409, ErrorCode.ABORTED),
        (418, ErrorCode.FAILED_PRECONDITION),
        (499, ErrorCode.CANCELLED),
        (502, ErrorCode.UNAVAILABLE),
        (504, ErrorCode.DEADLINE_EXCEEDED),
        (599, ErrorCode.INTERNAL),
        (201, ErrorCode.UNKNOWN),
        (302, ErrorCode.UNKNOWN),
    ],
)
def test_http_statuses_follow_googles_mapping(status, code):
    assert error_code(status) is code


def test_code_is_a_string_for_logs_and_json():
    error = CerebelumRPCError("refused", transport_code=409)
    assert error.code == "ABORTED" and error.transport_code == 409
    assert CerebelumRPCError("no answer").code is None
