"""Regenerate cerebelum_provider/proto/ from protos/ (run by `make protos`).

The generated modules are committed and never edited by hand; tests/test_proto_generated.py
regenerates them into a temporary folder and fails when the committed files differ.

protoc's output is post-processed here, and nowhere else:

- protoc names the generated modules after the proto's path (``cerebelum.worker``), which is not
  where they live in this distribution: the import line protoc writes between them and the module
  name it gives the message classes (``__module__``, which pickle follows) are rewritten to
  ``cerebelum_provider.proto``.
- The file is added to cerebelum_provider/proto/_pool.py's own descriptor pool instead of
  protobuf's default pool. The published cerebelum-sdk registers the same ``cerebelum.worker.*``
  symbols in the default pool from a file of its own, and one symbol from two files in one pool
  is protobuf's "duplicate symbol" error, whichever is imported second; workers written with the
  SDK and DAGs using this provider share interpreters. The wire does not change: same package,
  message names, field numbers and method paths.

Why a pool of our own and not something else: the clash is per pool and per symbol, and the
package name is part of the contract, so our symbols must live outside the default pool (emitting
a file byte-identical to the SDK's, which the default pool would accept twice, would tie us to
the SDK's build). Under protobuf 7's upb backend a pool resolves imports only among its own
files, so the pool also holds copies of the well-known types we embed (Struct, Timestamp,
Empty); _pool.py gives those copies classes that take ``struct_pb2.Struct`` and
``timestamp_pb2.Timestamp`` instances wherever their own type is expected, so the client and
emulator keep building messages with ``google.protobuf``'s helpers (a private pool without
that bridge fails 93 client and emulator tests: upb's CopyFrom takes only its own class).

Measured cost of importing worker_service_pb2 with protobuf already loaded: about 0.3 ms more
with bytecode cached (1.35 ms instead of 1.05; copying three small files and making five
classes), about 1.2 ms more where nothing is byte-compiled (compiling _pool.py); DAG files import
none of this at parse time.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_FILE = "cerebelum/worker/worker_service.proto"
DEFAULT_OUT = ROOT / "cerebelum_provider" / "proto"
GENERATED = (
    "worker_service_pb2.py",
    "worker_service_pb2.pyi",
    "worker_service_pb2_grpc.py",
    "worker_service_pb2_grpc.pyi",
)
PACKAGE = "cerebelum_provider.proto"
IMPORT_REWRITES = {
    "from cerebelum.worker import worker_service_pb2": f"from {PACKAGE} import worker_service_pb2",
    "import cerebelum.worker.worker_service_pb2": f"import {PACKAGE}.worker_service_pb2",
}
# protoc's imports of the other generated modules, e.g.
# "from google.protobuf import struct_pb2 as google_dot_protobuf_dot_struct__pb2".
DEPENDENCY_IMPORT = re.compile(r"^from [\w.]+ import \w+_pb2 as (\w+)$", re.MULTILINE)


def _replace_once(text: str, old: str, new: str, name: str) -> str:
    """``text`` with the single occurrence of ``old`` replaced; protoc changing its output fails here."""
    if text.count(old) != 1:
        raise SystemExit(f"{name}: expected exactly one {old!r} in protoc's output, found {text.count(old)}")
    return text.replace(old, new)


def use_own_pool(text: str, name: str) -> str:
    """A ``*_pb2.py`` of protoc's, registering its file in _pool.POOL instead of the default pool."""
    dependencies = DEPENDENCY_IMPORT.findall(text)
    text = _replace_once(
        text,
        "from google.protobuf import descriptor_pool as _descriptor_pool\n",
        f"from {PACKAGE} import _pool\n",
        name,
    )
    return _replace_once(
        text,
        "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(",
        f"DESCRIPTOR = _pool.add_serialized_file([{', '.join(dependencies)}], ",
        name,
    )


def name_module(text: str, name: str) -> str:
    """A ``*_pb2.py`` of protoc's, naming its classes' module where it really lives."""
    module = name.removesuffix(".py")
    return _replace_once(
        text,
        f"(DESCRIPTOR, 'cerebelum.worker.{module}', _globals)",
        f"(DESCRIPTOR, '{PACKAGE}.{module}', _globals)",
        name,
    )


def generate(out_dir: Path) -> list[Path]:
    """Write the generated modules into ``out_dir`` and return their paths."""
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as scratch:
        args = [
            "grpc_tools.protoc",
            f"--proto_path={PROTO_ROOT}",
            f"--proto_path={Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={scratch}",
            f"--grpc_python_out={scratch}",
            f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
            f"--mypy_out=quiet:{scratch}",
            f"--mypy_grpc_out=quiet:{scratch}",
            PROTO_FILE,
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {PROTO_FILE}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in GENERATED:
            text = (Path(scratch) / "cerebelum" / "worker" / name).read_text()
            for old, new in IMPORT_REWRITES.items():
                text = text.replace(old, new)
            if name.endswith("_pb2.py"):
                text = name_module(use_own_pool(text, name), name)
            target = out_dir / name
            target.write_text(text)
            written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    args = parser.parse_args()
    for path in generate(args.out):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
