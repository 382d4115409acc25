"""Faults on demand: latency, next-N failures, failure rate, hangs, bearer token, TLS and mTLS."""

from __future__ import annotations

import logging
import time

import grpc
import pytest

from cerebelum_provider.emulator import EmulatorTLS
from cerebelum_provider.models import ExecutionState
from cerebelum_provider.proto import worker_service_pb2 as pb
from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc
from tests.emulator.certs import make_tls_material

TOKEN = "s3cret-token-value"


def get(stub, execution_id="x", **kwargs):
    return stub.GetExecutionStatus(
        pb.GetExecutionStatusRequest(execution_id=execution_id), timeout=5, **kwargs
    )


def code_of(call):
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code()


def test_fail_next_fails_exactly_n_calls_with_the_code(core, stub):
    core.fail_next(2, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert [code_of(lambda: get(stub)), code_of(lambda: get(stub))] == [
        grpc.StatusCode.RESOURCE_EXHAUSTED
    ] * 2
    assert get(stub).error.kind == "not_found"
    assert core.call_counts() == {"GetExecutionStatus": 3}


def test_fail_next_can_target_some_rpcs_only(core, stub):
    core.fail_next(1, grpc.StatusCode.UNAVAILABLE, rpcs=["ResumeExecution"])
    assert get(stub).error.kind == "not_found"
    assert code_of(lambda: stub.ResumeExecution(pb.ResumeExecutionRequest(execution_id="x"), timeout=5)) == (
        grpc.StatusCode.UNAVAILABLE
    )
    assert (
        stub.ResumeExecution(pb.ResumeExecutionRequest(execution_id="x"), timeout=5).status
        == "failed_to_resume"
    )


def test_a_failed_call_changes_nothing(core, stub):
    execution_id = core.start_execution("orders", fail_at=0)
    core.advance(1)
    core.fail_next(1, grpc.StatusCode.UNAVAILABLE)
    code_of(lambda: stub.ResumeExecution(pb.ResumeExecutionRequest(execution_id=execution_id), timeout=5))
    assert core.resume_count(execution_id) == 0
    assert core.status(execution_id).status is ExecutionState.FAILED
    core.fail_next(1, grpc.StatusCode.UNAVAILABLE)
    code_of(lambda: stub.ExecuteWorkflow(pb.ExecuteRequest(workflow_module="orders"), timeout=5))
    assert core.execution_ids() == [execution_id]


def outcomes(emulator, calls=40):
    with grpc.insecure_channel(emulator.address) as channel:
        stub = pb_grpc.WorkerServiceStub(channel)
        results = []
        for _ in range(calls):
            try:
                get(stub)
                results.append("ok")
            except grpc.RpcError as error:
                results.append(error.code().name)
    return results


def test_failure_rate_is_reproducible_with_a_seed(core_factory):
    first, second = core_factory(), core_factory()
    first.set_failure_rate(0.5, grpc.StatusCode.UNAVAILABLE, seed=7)
    second.set_failure_rate(0.5, grpc.StatusCode.UNAVAILABLE, seed=7)
    pattern = outcomes(first)
    assert pattern == outcomes(second)
    assert set(pattern) == {"ok", "UNAVAILABLE"}
    first.set_failure_rate(0.0)
    assert set(outcomes(first, 5)) == {"ok"}


def test_latency_longer_than_the_deadline_ends_the_call(core, stub):
    core.set_latency(1.0)
    assert code_of(lambda: stub.GetExecutionStatus(pb.GetExecutionStatusRequest(), timeout=0.1)) == (
        grpc.StatusCode.DEADLINE_EXCEEDED
    )
    core.set_latency(0)
    assert get(stub).error.kind == "not_found"


def test_hang_accepts_calls_and_never_answers_until_the_deadline(core, stub):
    core.hang(True)
    assert code_of(lambda: stub.GetExecutionStatus(pb.GetExecutionStatusRequest(), timeout=0.2)) == (
        grpc.StatusCode.DEADLINE_EXCEEDED
    )
    assert core.call_counts() == {"GetExecutionStatus": 1}
    core.hang(False)
    assert get(stub).error.kind == "not_found"


def test_hung_calls_do_not_block_stop(core_factory):
    emulator = core_factory()
    emulator.hang(True)
    channel = grpc.insecure_channel(emulator.address)
    future = pb_grpc.WorkerServiceStub(channel).GetExecutionStatus.future(
        pb.GetExecutionStatusRequest(), timeout=30
    )
    deadline = time.monotonic() + 10
    while not emulator.call_counts() and time.monotonic() < deadline:
        time.sleep(0.01)
    emulator.stop()
    assert future.exception(timeout=10) is not None
    channel.close()


def test_invalid_fault_settings_are_refused():
    from cerebelum_provider.emulator.faults import Faults

    faults = Faults()
    with pytest.raises(ValueError, match="rate must be a number between 0 and 1"):
        faults.set_failure_rate(1.5)
    with pytest.raises(ValueError, match="code must be a grpc.StatusCode other than OK"):
        faults.fail_next(1, grpc.StatusCode.OK)
    with pytest.raises(ValueError, match="latency must be"):
        faults.set_latency(-1)
    with pytest.raises(ValueError, match=r"rpcs \['GetStatus'\] are not WorkerService RPCs"):
        faults.fail_next(1, rpcs=["GetStatus"])


def test_peers_are_the_distinct_client_connections(core):
    # A local subchannel pool: otherwise grpc may share one connection between the two channels.
    options = [("grpc.use_local_subchannel_pool", 1)]
    with (
        grpc.insecure_channel(core.address, options) as one,
        grpc.insecure_channel(core.address, options) as two,
    ):
        for channel in (one, two, one, two):
            get(pb_grpc.WorkerServiceStub(channel))
    assert len(core.peers()) == 2
    assert core.call_counts() == {"GetExecutionStatus": 4}


# Bearer token ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [None, [("authorization", "Bearer wrong")], [("authorization", TOKEN)]],
    ids=["missing", "wrong", "no-bearer"],
)
def test_token_required_refuses_missing_or_wrong_credentials(core_factory, metadata, caplog):
    guarded = core_factory(token=TOKEN)
    with (
        caplog.at_level(logging.DEBUG),
        grpc.insecure_channel(guarded.address) as channel,
        pytest.raises(grpc.RpcError) as raised,
    ):
        get(pb_grpc.WorkerServiceStub(channel), metadata=metadata)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert TOKEN not in (raised.value.details() or "")
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(guarded) + repr(guarded._faults)


def test_token_required_accepts_the_bearer_token(core_factory):
    guarded = core_factory(token=TOKEN)
    with grpc.insecure_channel(guarded.address) as channel:
        answer = get(pb_grpc.WorkerServiceStub(channel), metadata=[("authorization", f"Bearer {TOKEN}")])
    assert answer.error.kind == "not_found"


# TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_material():
    return make_tls_material()


def tls_stub(address, tls_material, *, client_cert=False):
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls_material.ca_pem,
        private_key=tls_material.client_key_pem if client_cert else None,
        certificate_chain=tls_material.client_cert_pem if client_cert else None,
    )
    channel = grpc.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", "localhost")]
    )
    return channel, pb_grpc.WorkerServiceStub(channel)


def test_tls_serves_clients_that_trust_the_ca_and_refuses_plaintext(core_factory, tls_material):
    secure = core_factory(tls=EmulatorTLS(tls_material.server_cert_pem, tls_material.server_key_pem))
    channel, stub = tls_stub(secure.address, tls_material)
    with channel:
        assert get(stub).error.kind == "not_found"
    with grpc.insecure_channel(secure.address) as plain:
        assert code_of(lambda: get(pb_grpc.WorkerServiceStub(plain))) == grpc.StatusCode.UNAVAILABLE


def test_mtls_requires_a_client_certificate(core_factory, tls_material):
    secure = core_factory(
        tls=EmulatorTLS(
            tls_material.server_cert_pem, tls_material.server_key_pem, client_ca_pem=tls_material.ca_pem
        )
    )
    channel, stub = tls_stub(secure.address, tls_material, client_cert=True)
    with channel:
        assert get(stub).error.kind == "not_found"
    channel, stub = tls_stub(secure.address, tls_material, client_cert=False)
    with channel:
        assert code_of(lambda: get(stub)) == grpc.StatusCode.UNAVAILABLE
    assert "PRIVATE KEY" not in repr(EmulatorTLS(tls_material.server_cert_pem, tls_material.server_key_pem))
