"""The committed generated code is exactly what scripts/generate_protos.py produces, and it lives in
a descriptor pool of its own whose well-known types take the default pool's instances."""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool, json_format, struct_pb2, timestamp_pb2

from cerebelum_provider.proto import _pool
from cerebelum_provider.proto import worker_service_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "cerebelum_provider" / "proto"
GENERATED = (
    "worker_service_pb2.py",
    "worker_service_pb2.pyi",
    "worker_service_pb2_grpc.py",
    "worker_service_pb2_grpc.pyi",
)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("protos")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_protos.py"), "--out", str(out)],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=120,
    )
    return out


@pytest.mark.parametrize("name", GENERATED)
def test_committed_file_equals_fresh_generation(fresh, name):
    assert (fresh / name).read_bytes() == (COMMITTED / name).read_bytes(), (
        f"cerebelum_provider/proto/{name} differs from a fresh generation; run `make protos` "
        "and never edit generated files by hand"
    )


# The generated code registers in its own descriptor pool (scripts/generate_protos.py says why),
# whose copies of the well-known types take the default pool's instances.

SAMPLE_INPUTS = {"n": 123, "items": [1, {"sku": "x"}], "none": None, "ok": True}


def _timestamp(micros: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(micros)
    return stamp


def _struct(data: dict) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(data)
    return struct


def test_generated_file_is_in_its_own_pool_not_the_default_one():
    assert pb.DESCRIPTOR.pool is _pool.POOL
    assert pb.ExecutionStatus.DESCRIPTOR.file is pb.DESCRIPTOR
    with pytest.raises(KeyError):
        descriptor_pool.Default().FindFileByName(pb.DESCRIPTOR.name)
    # The pool's Struct is a copy: same type on the wire, another class.
    copied = pb.ExecutionStatus().inputs
    assert copied.DESCRIPTOR.full_name == "google.protobuf.Struct"
    assert copied.DESCRIPTOR.file.pool is _pool.POOL
    assert not isinstance(copied, struct_pb2.Struct)


def test_message_classes_name_their_real_module_so_they_pickle():
    status = pb.ExecutionStatus(
        execution_id="e-1", started_at=_timestamp(1_500_000), inputs=_struct(SAMPLE_INPUTS)
    )
    assert pb.ExecutionStatus.__module__ == "cerebelum_provider.proto.worker_service_pb2"
    assert pickle.loads(pickle.dumps(status)) == status


DEFAULT_POOL_WRITES = {
    "constructor": lambda ts, st: pb.ExecutionStatus(started_at=ts, inputs=st),
    "CopyFrom": lambda ts, st: _apply(lambda m: (m.started_at.CopyFrom(ts), m.inputs.CopyFrom(st))),
    "MergeFrom": lambda ts, st: _apply(lambda m: (m.started_at.MergeFrom(ts), m.inputs.MergeFrom(st))),
    "CopyFrom over older content": lambda ts, st: _apply(
        lambda m: (m.started_at.CopyFrom(ts), m.inputs.CopyFrom(st)),
        pb.ExecutionStatus(started_at=_timestamp(7), inputs=_struct({"stale": 1})),
    ),
}


def _apply(write, message=None):
    message = pb.ExecutionStatus() if message is None else message
    write(message)
    return message


@pytest.mark.parametrize("how", sorted(DEFAULT_POOL_WRITES))
def test_default_pool_well_known_types_go_into_our_messages(how):
    stamp, struct = _timestamp(1_500_000), _struct(SAMPLE_INPUTS)
    status = DEFAULT_POOL_WRITES[how](stamp, struct)
    moment = datetime(1970, 1, 1, 0, 0, 1, 500_000, timezone.utc)
    assert status.started_at.ToDatetime(tzinfo=timezone.utc) == moment
    assert json_format.MessageToDict(status.inputs) == {
        "n": 123.0,
        "items": [1.0, {"sku": "x"}],
        "none": None,
        "ok": True,
    }
    assert status.started_at == stamp and status.inputs == struct
    assert status.inputs != _struct({"n": 124})
    assert status.started_at.SerializeToString() == stamp.SerializeToString()


def test_default_pool_struct_goes_into_a_map_and_a_nested_message():
    status = pb.ExecutionStatus()
    status.step_outputs["charge"].CopyFrom(_struct({"paid": 9.5}))
    status.completed_steps.add(step_name="charge", output=_struct({"paid": 9.5}))
    assert json_format.MessageToDict(status.step_outputs["charge"]) == {"paid": 9.5}
    assert json_format.MessageToDict(status.completed_steps[0].output) == {"paid": 9.5}


def test_well_known_helpers_work_on_our_fields():
    built = pb.ExecutionStatus(inputs={"a": [1, 2]}, started_at=datetime(2026, 1, 2, 3, 4, 5))
    assert json_format.MessageToDict(built.inputs) == {"a": [1.0, 2.0]}
    assert built.started_at.ToSeconds() == 1767323045
    status = pb.ExecutionStatus()
    status.inputs.update({"a": [1, 2]})
    status.started_at.FromDatetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert status.started_at.ToSeconds() == 1767323045
    assert dict(status.inputs)["a"][1] == 2.0
    answer = {"inputs": {"x": "y"}, "startedAt": "2026-01-02T03:04:05Z"}
    parsed = json_format.ParseDict(answer, pb.ExecutionStatus())
    assert parsed.started_at == status.started_at and parsed.inputs["x"] == "y"


def test_a_message_of_another_type_is_still_refused():
    status = pb.ExecutionStatus()
    with pytest.raises(TypeError):
        status.inputs.CopyFrom(_timestamp(1))
    with pytest.raises(TypeError):
        status.started_at.MergeFrom(_struct({"a": 1}))
    with pytest.raises(TypeError):
        pb.ExecutionStatus(started_at=_struct({"a": 1}))


def test_generator_stops_on_protoc_output_it_does_not_recognise():
    spec = importlib.util.spec_from_file_location("generate_protos", ROOT / "scripts" / "generate_protos.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    changed_protoc = "from google.protobuf import descriptor_pool as _descriptor_pool\nDESCRIPTOR = other()\n"
    with pytest.raises(SystemExit, match=r"x_pb2\.py: expected exactly one"):
        generator.use_own_pool(changed_protoc, "x_pb2.py")
