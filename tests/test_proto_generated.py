"""The committed generated code is exactly what scripts/generate_protos.py produces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
