"""``cerebelum-emulator serve --http-port``: both addresses in the ready line, which the stack
scripts' parser (a regex on "listening on HOST:PORT") still reads, and both servers answer."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import grpc
import httpx

from cerebelum_provider.proto import worker_service_pb2 as pb
from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc
from tests.emulator.test_persistence import ServeProcess

# scripts/airflow_stack.py's pattern for the ready line.
STACK_PATTERN = re.compile(r"listening on (\S+):(\d+)")
READY_WITH_REST = re.compile(r"(?P<grpc>\S+:\d+) \(REST (?P<http>http://\S+:\d+)\)")


def test_http_port_adds_the_rest_url_to_the_ready_line():
    served = ServeProcess("--http-port", "0", "--demo")
    try:
        rest_of_line = served.address
        match = READY_WITH_REST.fullmatch(rest_of_line)
        assert match, rest_of_line
        stack = STACK_PATTERN.search(f"listening on {rest_of_line}")
        assert f"{stack.group(1)}:{stack.group(2)}" == match["grpc"]
        with grpc.insecure_channel(match["grpc"]) as channel:
            listed = pb_grpc.WorkerServiceStub(channel).ListExecutions(pb.ListExecutionsRequest(), timeout=5)
        with httpx.Client(base_url=match["http"], timeout=5) as client:
            assert client.get("/health").status_code == 200
            body = client.get("/api/v1/executions").json()
        assert body["total"] == listed.total_count == 9
        assert [s["id"] for s in body["executions"]] == [e.execution_id for e in listed.executions]
    finally:
        assert served.stop(signal.SIGTERM) == 0


def test_without_http_port_the_ready_line_is_unchanged():
    served = ServeProcess()
    try:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", served.address)
    finally:
        assert served.stop(signal.SIGTERM) == 0


def test_a_bad_http_port_is_refused_naming_it():
    done = subprocess.run(
        [sys.executable, "-m", "cerebelum_provider.emulator", "serve", "--port", "0", "--http-port", "70000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--http-port must be between 0 and 65535, got 70000" in done.stderr
