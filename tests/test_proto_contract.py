"""The compiled proto matches the wire contract with Core, field by field.

The expected shape is data (tests/data/core_contract.txt, transcribed from the contract); this
module only parses it and compares it with the descriptor of the generated code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from cerebelum_provider.proto import worker_service_pb2 as pb

CONTRACT_FILE = Path(__file__).parent / "data" / "core_contract.txt"
PACKAGE = "cerebelum.worker"
SCALARS = {
    "string": FieldDescriptor.TYPE_STRING,
    "bool": FieldDescriptor.TYPE_BOOL,
    "int32": FieldDescriptor.TYPE_INT32,
    "int64": FieldDescriptor.TYPE_INT64,
}
FIELD = re.compile(r"^(\d+) (?:(optional|repeated) )?(map<(\S+), (\S+)>|\S+) (\w+)$")


def _lines(prefix: str | None) -> list[str]:
    lines = [line.strip() for line in CONTRACT_FILE.read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if prefix is None:
        return [line for line in lines if not line.startswith(("rpc ", "enum "))]
    return [line[len(prefix) :] for line in lines if line.startswith(prefix)]


def _full_name(type_name: str) -> str:
    return type_name if type_name.startswith("google.") else f"{PACKAGE}.{type_name}"


MESSAGES = {}
for _line in _lines(None):
    _name, _fields = _line.split(": ", 1)
    MESSAGES[_name] = [field.strip() for field in _fields.split(";")]
RPCS = [line.split() for line in _lines("rpc ")]
ENUMS = {}
for _line in _lines("enum "):
    _name, _values = _line.split(": ", 1)
    ENUMS[_name] = {value.split("=")[0]: int(value.split("=")[1]) for value in _values.split(", ")}

FIELDS = [(message, spec) for message, specs in MESSAGES.items() for spec in specs]


def test_contract_table_was_read():
    assert len(RPCS) == 10 and len(ENUMS) == 3 and len(MESSAGES) == 32
    assert len(FIELDS) == 119


def _check_type(field: FieldDescriptor, type_name: str) -> None:
    if type_name in SCALARS:
        assert field.type == SCALARS[type_name], f"{field.full_name} should be {type_name}"
    elif type_name in ENUMS:
        assert field.type == FieldDescriptor.TYPE_ENUM
        assert field.enum_type.full_name == _full_name(type_name)
    else:
        assert field.type == FieldDescriptor.TYPE_MESSAGE, f"{field.full_name} should be {type_name}"
        assert field.message_type.full_name == _full_name(type_name)


@pytest.mark.parametrize(("message_name", "spec"), FIELDS, ids=[f"{m}.{s.split()[-1]}" for m, s in FIELDS])
def test_field_matches_contract(message_name, spec):
    number, modifier, type_name, key_type, value_type, name = FIELD.match(spec).groups()
    descriptor = pb.DESCRIPTOR.message_types_by_name[message_name]
    field = descriptor.fields_by_number[int(number)]
    assert field.name == name
    if key_type is not None:
        entry = field.message_type
        assert field.is_repeated and entry.GetOptions().map_entry, f"{field.full_name} should be a map"
        _check_type(entry.fields_by_name["key"], key_type)
        _check_type(entry.fields_by_name["value"], value_type)
        return
    assert field.is_repeated == (modifier == "repeated")
    _check_type(field, type_name)
    if field.type != FieldDescriptor.TYPE_MESSAGE and not field.is_repeated:
        # proto3 `optional` is explicit presence; every other scalar must have none.
        assert field.has_presence == (modifier == "optional"), f"{field.full_name} presence"


@pytest.mark.parametrize("message_name", sorted(MESSAGES))
def test_message_has_no_fields_beyond_contract(message_name):
    descriptor = pb.DESCRIPTOR.message_types_by_name[message_name]
    assert sorted(descriptor.fields_by_number) == sorted(
        int(spec.split()[0]) for spec in MESSAGES[message_name]
    )


def test_no_messages_beyond_contract():
    assert set(pb.DESCRIPTOR.message_types_by_name) == set(MESSAGES)
    assert pb.DESCRIPTOR.package == PACKAGE


@pytest.mark.parametrize(("enum_name", "values"), sorted(ENUMS.items()))
def test_enum_matches_contract(enum_name, values):
    descriptor = pb.DESCRIPTOR.enum_types_by_name[enum_name]
    assert {value.name: value.number for value in descriptor.values} == values


def test_service_has_exactly_the_contract_rpcs():
    service = pb.DESCRIPTOR.services_by_name["WorkerService"]
    assert service.full_name == f"{PACKAGE}.WorkerService"
    assert sorted(method.name for method in service.methods) == sorted(rpc for rpc, _, _ in RPCS)


@pytest.mark.parametrize(("rpc", "request_type", "response_type"), RPCS, ids=[rpc for rpc, _, _ in RPCS])
def test_rpc_request_and_response(rpc, request_type, response_type):
    method = pb.DESCRIPTOR.services_by_name["WorkerService"].methods_by_name[rpc]
    assert method.input_type.full_name == _full_name(request_type)
    assert method.output_type.full_name == _full_name(response_type)
    assert not method.client_streaming and not method.server_streaming
