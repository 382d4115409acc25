"""What every benchmark shares: the Core emulator in its own process, machine facts, the
event-loop lag probe, the TCP connection count, and the writer of bench/RESULTS.md.

The emulator runs in a separate process (``python bench/_support.py serve ...``) so that the CPU
time a benchmark measures is the client's alone. That process also answers control calls
(seed executions, complete them, read call counts, resume counts and peers) on a local socket,
which any benchmark process can attach to, including one running the cerebelum-sdk reference.

This module imports no grpc or protobuf at the top, so the reference client's process can use it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "RESULTS.md"
PYTHON = sys.executable


# -- the emulator's process -------------------------------------------------------------------


class RemoteCore:
    """A ``CoreEmulator`` running in a child process, driven through a control socket.

    ``RemoteCore.start(latency=0.005)`` starts one; ``RemoteCore.attach(control)`` reaches one
    started by another process (``control`` is :attr:`control`, a JSON-safe dict). Any
    ``CoreEmulator`` method can be called by name (``core.call_counts()``), plus the bulk
    helpers of this module (``seed``, ``complete_all``, ``resume_histogram``).
    """

    def __init__(self, control: dict[str, str], process: subprocess.Popen | None = None) -> None:
        self.control = control
        self.address: str = control["address"]
        self._process = process
        self._conn = Client(control["socket"], authkey=bytes.fromhex(control["authkey"]))
        self._lock = threading.Lock()

    @classmethod
    def start(
        cls, *, latency: float = 0.0, tls_dir: str | None = None, step_seconds: float | None = None
    ) -> RemoteCore:
        """Start an emulator process (plaintext, or TLS with the PEMs in ``tls_dir``).

        ``step_seconds`` switches the emulator to real time (sleeps end on the wall clock).
        """
        socket_path = os.path.join(tempfile.mkdtemp(prefix="cerebelum-bench-"), "control.sock")
        authkey = secrets.token_hex(16)
        command = [PYTHON, __file__, "serve", "--latency", str(latency), "--socket", socket_path]
        if tls_dir is not None:
            command += ["--tls-dir", tls_dir]
        if step_seconds is not None:
            command += ["--step-seconds", str(step_seconds)]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            env={**os.environ, "BENCH_AUTHKEY": authkey},
            text=True,
        )
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the emulator process exited before it was ready")
        control = {"address": json.loads(line)["address"], "socket": socket_path, "authkey": authkey}
        return cls(control, process)

    @classmethod
    def attach(cls, control: dict[str, str]) -> RemoteCore:
        """Reach an emulator process started elsewhere."""
        return cls(control)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self._conn.send((name, args, kwargs))
                outcome, value = self._conn.recv()
            if outcome == "error":
                raise RuntimeError(f"emulator {name}() failed: {value}")
            return value

        return call

    def close(self) -> None:
        """Stop the emulator process (when this object started it) or just detach."""
        if self._process is not None:
            self._process.stdin.close()  # the process stops when its stdin closes
            try:
                self._process.wait(60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._conn.close()

    def __enter__(self) -> RemoteCore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def seed(core: Any, workflow: str, count: int, kind: str = "running", sleep_ms: int = 600_000) -> list[str]:
    """Start ``count`` executions of ``workflow`` left RUNNING, FAILED or SLEEPING; return their ids."""
    engine = core.engine
    ids = []
    with engine.batch():
        for n in range(count):
            if kind == "running":
                ids.append(core.start_execution(workflow, inputs={"n": n}))
            elif kind == "failed":
                ids.append(core.start_execution(workflow, inputs={"n": n}, fail_at=0))
            elif kind == "sleeping":
                ids.append(core.start_execution(workflow, inputs={"n": n}, sleep_at=0, sleep_ms=sleep_ms))
            else:
                raise ValueError(f"kind must be running, failed or sleeping, got {kind!r}")
        if kind != "running":
            for execution_id in ids:
                engine.advance(1, execution_id)
    return ids


def complete_all(core: Any, execution_ids: Sequence[str], spacing: float = 0.0) -> dict[str, float]:
    """Complete each execution (``spacing`` seconds apart); return when each was completed (epoch s)."""
    completed_at = {}
    for execution_id in execution_ids:
        core.complete(execution_id)
        completed_at[execution_id] = time.time()
        if spacing:
            time.sleep(spacing)
    return completed_at


def resume_histogram(core: Any, execution_ids: Sequence[str] | None = None) -> dict[int, int]:
    """How many executions were resumed 0, 1, 2... times (all executions when ids is None)."""
    ids = core.execution_ids() if execution_ids is None else execution_ids
    return dict(Counter(core.resume_count(execution_id) for execution_id in ids))


def sleep_ends(core: Any, execution_ids: Sequence[str]) -> dict[str, float]:
    """When each sleeping execution's sleep ends, on the emulator's clock (epoch seconds)."""
    ends = {}
    for execution_id in execution_ids:
        sleep = core.engine.get(execution_id).sleep
        ends[execution_id] = sleep.started_at + sleep.duration_ms / 1000
    return ends


def cpu_time(core: Any) -> float:
    """CPU seconds the emulator process has used so far (all its threads)."""
    return time.process_time()


def rest_url(core: Any) -> str:
    """The emulator's REST base URL (``http://127.0.0.1:PORT``): it serves Core's REST API too."""
    return core.http_url


_HELPERS = {
    "rest_url": rest_url,
    "seed": seed,
    "complete_all": complete_all,
    "resume_histogram": resume_histogram,
    "cpu_time": cpu_time,
    "sleep_ends": sleep_ends,
}


def _serve(args: argparse.Namespace) -> None:
    from cerebelum_provider.emulator import CoreEmulator, EmulatorTLS

    tls = None
    if args.tls_dir:
        folder = Path(args.tls_dir)
        tls = EmulatorTLS((folder / "server.pem").read_bytes(), (folder / "server.key").read_bytes())
    core = CoreEmulator(latency=args.latency, tls=tls, step_seconds=args.step_seconds).start()
    listener = Listener(args.socket, authkey=bytes.fromhex(os.environ["BENCH_AUTHKEY"]))

    def answer(conn: Any) -> None:
        with conn:
            while True:
                try:
                    name, call_args, call_kwargs = conn.recv()
                except (EOFError, OSError):
                    return
                try:
                    helper = _HELPERS.get(name)
                    if helper is not None:
                        value = helper(core, *call_args, **call_kwargs)
                    else:
                        value = getattr(core, name)(*call_args, **call_kwargs)
                    conn.send(("ok", value))
                except Exception as error:  # reported to the caller, which raises it
                    conn.send(("error", f"{type(error).__name__}: {error}"))

    def accept() -> None:
        while True:
            conn = listener.accept()
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    print(json.dumps({"address": core.address}), flush=True)
    sys.stdin.read()
    core.stop()
    listener.close()


# -- TLS material -----------------------------------------------------------------------------


def make_tls_dir() -> str:
    """A folder with a fresh self-signed CA (``ca.pem``) and a server cert for localhost/127.0.0.1."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject: str, key: Any, issuer: str, signing_key: Any, *, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("bench CA", ca_key, "bench CA", ca_key, ca=True)
    server_cert = certificate("localhost", server_key, "bench CA", ca_key, ca=False)
    folder = Path(tempfile.mkdtemp(prefix="cerebelum-bench-tls-"))
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (folder / "server.pem").write_bytes(server_cert.public_bytes(pem))
    (folder / "server.key").write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(folder)


# -- measuring --------------------------------------------------------------------------------


class LoopLag:
    """A 10 ms ticker on the event loop; ``worst`` is its largest overshoot, in seconds.

    An overshoot is how much later than asked the ticker woke up: the time the loop was busy
    with something else (a blocking call, a burst of callbacks), or the process was not given
    a core at all (other load on the machine). ``worst_cpu`` separates the two: the largest CPU
    time the loop's thread spent between two ticks, which the machine's load does not inflate
    (but a call that blocks waiting on the network does not show in it either).
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.worst = 0.0
        self.worst_cpu = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def reset(self) -> None:
        self.worst, self.worst_cpu, self.ticks = 0.0, 0.0, 0

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked, cpu = loop.time(), time.thread_time()
            await asyncio.sleep(self.interval)
            self.worst = max(self.worst, loop.time() - asked - self.interval)
            self.worst_cpu = max(self.worst_cpu, time.thread_time() - cpu)
            self.ticks += 1


def established_connections(port: int, pid: int | None = None) -> int:
    """ESTABLISHED TCP connections of process ``pid`` (default: this one) to ``port`` on any host."""
    import psutil

    process = psutil.Process(pid)
    return sum(
        1
        for connection in process.net_connections(kind="tcp")
        if connection.status == psutil.CONN_ESTABLISHED and connection.raddr and connection.raddr.port == port
    )


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def reaped_children_cpu() -> float:
    """CPU seconds (user + system) of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


# -- reporting --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Facts about where a benchmark ran, for the results table."""
    cpu = "unknown"
    try:
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    import importlib.metadata as metadata

    versions = {}
    for package in ("grpcio", "protobuf", "apache-airflow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "load_average": tuple(round(value, 2) for value in os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        **versions,
    }


def write_section(name: str, markdown: str) -> None:
    """Put ``markdown`` between this benchmark's markers in RESULTS.md, keeping everything else.

    A section already there is replaced where it stands, so that the text written by hand around
    it (the notes that read its figures) stays beside it; a new one goes at the end.
    """
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = f"<!-- bench:{name} -->\n{markdown.rstrip()}\n<!-- /bench:{name} -->"
    marker = re.escape(name)
    pattern = re.compile(rf"<!-- bench:{marker} -->\n.*?<!-- /bench:{marker} -->", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = f"{text.rstrip()}\n\n{block}\n"
    RESULTS.write_text(text)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def run_json(command: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 900) -> Any:
    """Run a benchmark helper process and return the JSON object on its last stdout line."""
    done = subprocess.run(
        list(command), capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command[:4]} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the Core emulator process of the benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("--latency", type=float, default=0.0)
    serve.add_argument("--socket", required=True)
    serve.add_argument("--tls-dir", default=None)
    serve.add_argument("--step-seconds", type=float, default=None)
    _serve(parser.parse_args(argv))


if __name__ == "__main__":
    main()
