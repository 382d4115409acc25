"""Regenerate cerebelum_provider/proto/ from protos/ (run by `make protos`).

The generated modules are committed and never edited by hand; tests/test_proto_generated.py
regenerates them into a temporary folder and fails when the committed files differ.

protoc names the generated modules after the proto's path (``cerebelum.worker``), which is
not where they live in this distribution; the one import line protoc writes between them is
rewritten here, and nowhere else, to point at ``cerebelum_provider.proto``.
"""

from __future__ import annotations

import argparse
import shutil
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
IMPORT_REWRITES = {
    "from cerebelum.worker import worker_service_pb2": "from cerebelum_provider.proto import worker_service_pb2",
    "import cerebelum.worker.worker_service_pb2": "import cerebelum_provider.proto.worker_service_pb2",
}


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
