"""The descriptor pool this package's generated modules register in: their own, not protobuf's default.

The published cerebelum-sdk registers ``cerebelum.worker.*`` in protobuf's default pool from its own
file; two files defining one symbol in one pool is protobuf's "duplicate symbol" error, whichever
is imported second. In :data:`POOL` our messages never meet the SDK's, and the wire is the same.

Under protobuf's upb backend a pool resolves a file's imports only among its own files, so
:data:`POOL` holds copies of the google/protobuf files our protos import (Struct, Timestamp,
Empty), and those copies have their own classes, distinct from ``struct_pb2.Struct`` and
``timestamp_pb2.Timestamp``. protobuf attaches the well-known-type helpers by full name
(``Struct.update``, ``Timestamp.ToDatetime``, ``json_format``...), so the copies behave the same;
the classes made here also accept the default pool's instances wherever the same type is expected
(``CopyFrom``, ``MergeFrom``, constructor arguments, ``==``), so code that builds a
``struct_pb2.Struct`` or ``timestamp_pb2.Timestamp`` and puts it in one of our messages keeps
working. What does differ: ``isinstance(message.inputs, struct_pb2.Struct)`` is False.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from google.protobuf import descriptor_pool, message, message_factory, reflection
from google.protobuf.descriptor import Descriptor, FileDescriptor

#: The pool of every message in cerebelum_provider.proto.
POOL = descriptor_pool.DescriptorPool()

# upb keeps a class only while something references it: without these, a field access would
# build a plain class for the copied type and the bridging methods below would be lost.
_COPIED_TYPE_CLASSES: dict[str, type[message.Message]] = {}
_copied_files: set[str] = set()


def add_serialized_file(dependencies: Iterable[ModuleType], serialized_pb: bytes) -> FileDescriptor:
    """Add a generated file to :data:`POOL` after the files it imports; return its descriptor.

    ``dependencies`` are the ``*_pb2`` modules the generated file imports: ours are already in
    :data:`POOL`, the others (protobuf's well-known types) are copied into it once.
    """
    for module in dependencies:
        _copy_file(module.DESCRIPTOR)
    return POOL.AddSerializedFile(serialized_pb)


def _copy_file(file: FileDescriptor) -> None:
    if file.pool is POOL or file.name in _copied_files:
        return
    for dependency in file.dependencies:
        _copy_file(dependency)
    copied = POOL.AddSerializedFile(file.serialized_pb)
    _copied_files.add(file.name)
    for descriptor in copied.message_types_by_name.values():
        _COPIED_TYPE_CLASSES[descriptor.full_name] = _bridged_class(descriptor)


def _same_type_other_pool(mine: message.Message, other: Any) -> bool:
    return (
        isinstance(other, message.Message)
        and type(other) is not type(mine)
        and other.DESCRIPTOR.full_name == mine.DESCRIPTOR.full_name
    )


def _bridged_class(descriptor: Descriptor) -> type[message.Message]:
    """The class of a copied well-known type, taking the default pool's instances as its own.

    Both classes describe one wire type, so the other pool's message is read from its bytes.
    """

    def MergeFrom(self: message.Message, other: message.Message) -> None:  # noqa: N802 (protobuf's name)
        if _same_type_other_pool(self, other):
            self.MergeFromString(other.SerializePartialToString())
            return
        super(bridged, self).MergeFrom(other)

    def CopyFrom(self: message.Message, other: message.Message) -> None:  # noqa: N802 (protobuf's name)
        if _same_type_other_pool(self, other):
            self.Clear()
            self.MergeFromString(other.SerializePartialToString())
            return
        super(bridged, self).CopyFrom(other)

    def __eq__(self: message.Message, other: object) -> bool:
        if _same_type_other_pool(self, other):
            return super(bridged, self).__eq__(type(self).FromString(other.SerializePartialToString()))
        return super(bridged, self).__eq__(other)

    def __ne__(self: message.Message, other: object) -> bool:
        return not self == other

    namespace: dict[str, Any] = {
        "DESCRIPTOR": descriptor,
        "__module__": __name__,
        "MergeFrom": MergeFrom,
        "CopyFrom": CopyFrom,
        "__eq__": __eq__,
        "__ne__": __ne__,
    }
    default_class = message_factory.GetMessageClass(
        descriptor_pool.Default().FindMessageTypeByName(descriptor.full_name)
    )
    if hasattr(default_class, "_internal_assign"):
        # A constructor argument of another class goes through _internal_assign (Struct from a
        # mapping, Timestamp from a datetime); the default pool's instance is taken as is.
        def _internal_assign(self: message.Message, value: Any) -> None:
            if _same_type_other_pool(self, value):
                self.CopyFrom(value)
            else:
                super(bridged, self)._internal_assign(value)

        namespace["_internal_assign"] = _internal_assign
    bridged = reflection.GeneratedProtocolMessageType(descriptor.name, (message.Message,), namespace)
    return bridged
