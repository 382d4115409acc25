"""Start and stop the real Cerebelum Core release (with its worker and token service) for tests.

The release lives outside this repository (``../shared/real-core`` beside it, or the directory
named by ``CEREBELUM_REAL_CORE``): a ``run-core`` script and a ``cerebelum-core-<commit>-release.tgz``.
:class:`RealCore` runs four things, each in its own process with its output in a log file under
its work directory, and stops them all, also when starting fails half-way:

- the fake Thalamus (``examples/fake_thalamus.py``) that serves Core's JWT keys and prints a token;
- Core itself (``run-core start``: a private PostgreSQL plus the release) on two free ports;
- the SDK worker (``examples/sdk_worker.py``, launched by ``real_core_worker.py``, which makes each
  step take 50 ms: the release loses results that come back faster), which runs the steps ``ok_a``,
  ``ok_b``, ``ok_c``, ``boom`` (raises while :attr:`RealCore.boom_flag` exists, which it does from the start) and ``ask``
  (asks for approval once per execution);
- and, after every Core start, the blueprints in :data:`BLUEPRINTS` (Core keeps them in memory only).

Typical use::

    release = find_release()
    if release.missing:
        pytest.skip(release.missing)
    with RealCore(release, workdir) as core:
        execution_id = core.start_execution("rc_ok", {"order": 7})
        core.wait_for_state(execution_id, {"completed"}, timeout=20)

Core always serves its metrics on port 4021, so one real Core runs per machine at a time: starting
fails with a clear error when that port is taken.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import httpx
from typing_extensions import Self

REPO = Path(__file__).resolve().parent.parent
ENV_VAR = "CEREBELUM_REAL_CORE"
DEFAULT_RELEASE_DIR = REPO.parent / "shared" / "real-core"
METRICS_PORT = 4021
#: The Erlang VM flags Core runs with by default: its schedulers spin a while on running out of work
#: before they sleep (to pick the next job up sooner), and here several Cores share two cores with
#: Airflow and the tests, which need that time. Core does the same work without the spin
#: (bench/bench_core_busy_wait.py measures the CPU it saves).
NO_BUSY_WAIT = "+sbwt none +sbwtdcpu none +sbwtdio none"
# the worker id examples/sdk_worker.py registers under (its WORKER_ID default)
WORKER_ID = "py-worker-1"

# workflow name -> step names, in order; every step is one the SDK worker registers
BLUEPRINTS: dict[str, tuple[str, ...]] = {
    "rc_ok": ("ok_a", "ok_b", "ok_c"),
    "rc_fail": ("ok_a", "boom"),
    "rc_ask": ("ok_a", "ask", "ok_c"),
}

TERMINAL_STATES = frozenset({"completed", "failed"})
_STEP_LINE = re.compile(r"^STEP (\S+) (\S+)")


class _HeartbeatKeeper:
    """Sends Core a heartbeat for the SDK worker every few seconds, from a thread of this process.

    The published SDK's worker (cerebelum-sdk 0.3.1) calls the blocking ``PollForTask`` inside its
    asyncio loop and, when the poll comes back empty, polls again without ever yielding: its own
    heartbeat task never runs. Core then deregisters the worker 30 s after it registered ("Worker
    py-worker-1 is dead"), drops it from ``GET /api/v1/workflows``, and the worker only registers
    again after three failed polls. The tests are about Core and our client, not that race, so the
    harness keeps the registration alive the way a healthy worker would.
    """

    def __init__(self, grpc_target: str, worker_id: str, interval: float = 5.0) -> None:
        from cerebelum_provider.proto import worker_service_pb2 as pb
        from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

        self._channel = grpc.insecure_channel(grpc_target)
        self._stub = pb_grpc.WorkerServiceStub(self._channel)
        self._request = pb.HeartbeatRequest(worker_id=worker_id, status=pb.IDLE)
        self._interval = interval
        self._stopped = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, name="real-core-heartbeats", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            if self._paused.is_set():
                continue
            try:
                self._stub.Heartbeat(self._request, timeout=self._interval)
            except grpc.RpcError:
                pass  # Core is restarting or stopping; the next beat tries again

    def pause(self) -> None:
        """Send no heartbeat until :meth:`resume`: a restarted Core takes a heartbeat of a worker it
        does not know as that worker's registration, and then refuses the worker's own ("Worker
        already registered") while the worker backs off ever longer."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)
        self._channel.close()


class RealCoreError(RuntimeError):
    """The real Core stack could not be started, or did not answer as expected."""


@dataclass(frozen=True)
class Release:
    """Where the real Core release is, or why it is not there (``missing`` is then the reason)."""

    directory: Path
    tarball: Path | None
    missing: str | None

    @property
    def commit(self) -> str:
        """The Core commit the release was built from, from the tarball name ("be56c90")."""
        if self.tarball is None:
            raise RealCoreError(self.missing or f"no release tarball in {self.directory}")
        match = re.fullmatch(r"cerebelum-core-(.+)-release\.tgz", self.tarball.name)
        if match is None:
            raise RealCoreError(
                f"release tarball name {self.tarball.name!r} is not cerebelum-core-<commit>-release.tgz"
            )
        return match.group(1)


def find_release(directory: str | os.PathLike[str] | None = None) -> Release:
    """The release in ``directory``, else in ``$CEREBELUM_REAL_CORE``, else in ``<repo>/../shared/real-core``.

    Never raises for a missing release: the answer's ``missing`` says what is absent, in one line.
    """
    chosen = Path(directory or os.environ.get(ENV_VAR) or DEFAULT_RELEASE_DIR)
    tarballs = sorted(chosen.glob("cerebelum-core-*-release.tgz")) if chosen.is_dir() else []
    if not (chosen / "run-core").is_file() or not tarballs:
        return Release(
            chosen,
            None,
            f"real Core release not found at {chosen}; set {ENV_VAR} to a directory holding run-core "
            "and a cerebelum-core-*-release.tgz",
        )
    return Release(chosen, tarballs[-1], None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Whether something on this machine already holds ``port`` (Core binds its metrics on all addresses)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def _wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _end_process_group(process: subprocess.Popen[Any] | None, grace: float = 5.0) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(grace)
    except ProcessLookupError:
        pass


class RealCore:
    """The real Core with a token service and an SDK worker; a context manager.

    After :meth:`start`: :attr:`grpc_target` ("127.0.0.1:PORT"), :attr:`http_url`, :attr:`token`
    (a bearer token Core accepts), :attr:`release` (the Core commit, e.g. "be56c90"),
    :attr:`worker_log_path` and the REST helpers below.
    """

    def __init__(
        self,
        release: Release | None = None,
        workdir: str | os.PathLike[str] | None = None,
        *,
        python: str = sys.executable,
        blueprints: Mapping[str, Iterable[str]] = BLUEPRINTS,
        start_timeout: float = 150.0,
        erl_flags: str = NO_BUSY_WAIT,
    ) -> None:
        self._release = release or find_release()
        if self._release.missing:
            raise RealCoreError(self._release.missing)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="real-core-"))
        self.python = python
        self.blueprints = {name: tuple(steps) for name, steps in blueprints.items()}
        # run-core waits up to 60 s for Core's ports after creating and starting PostgreSQL; with the
        # test stages side by side on two cores a start can take most of a minute (42 s measured).
        self.start_timeout = start_timeout
        self.erl_flags = erl_flags
        self.state_dir: Path | None = None
        self.boom_flag = self.workdir / "boom_flag"
        self.worker_log_path = self.workdir / "worker.log"
        self.thalamus_log_path = self.workdir / "thalamus.log"
        self.grpc_port = 0
        self.http_port = 0
        self.token = ""
        self._thalamus: subprocess.Popen[bytes] | None = None
        self._worker: subprocess.Popen[bytes] | None = None
        self._heartbeats: _HeartbeatKeeper | None = None
        self._core_started = False
        self._http: httpx.Client | None = None
        self.started_in: float | None = None
        self.restarted_in: list[float] = []

    # ---- facts ---------------------------------------------------------------------------------

    @property
    def release(self) -> str:
        """The Core commit of the running release ("be56c90")."""
        return self._release.commit

    @property
    def grpc_target(self) -> str:
        """Core's gRPC address, "127.0.0.1:PORT" (plaintext)."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """Core's REST base URL, "http://127.0.0.1:PORT"."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def core_log_path(self) -> Path:
        """Core's own log: in the state dir while running, copied into :attr:`workdir` at stop."""
        return (self.state_dir or self.workdir) / "core.log"

    @property
    def auth_headers(self) -> dict[str, str]:
        """The Authorization header Core's REST API wants."""
        return {"Authorization": f"Bearer {self.token}"}

    def airflow_connection_uri(self, api: str = "http") -> str:
        """An Airflow ``cerebelum://`` connection URI for this Core over ``api`` ("http" or "grpc").

        Over "http" (Core's REST API) it carries the bearer token; gRPC needs none here.
        """
        if api == "http":
            return f"cerebelum://:{quote(self.token, safe='')}@127.0.0.1:{self.http_port}?api=http&timeout=15"
        if api == "grpc":
            return f"cerebelum://{self.grpc_target}?api=grpc&timeout=15"
        raise ValueError(f"api must be 'http' or 'grpc', got {api!r}")

    # ---- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> Self:
        """Start token service, Core (and its PostgreSQL), worker; submit the blueprints.

        Raises :class:`RealCoreError` (after stopping whatever did start) when a piece does not come up.
        """
        began = time.monotonic()
        try:
            if port_in_use(METRICS_PORT):
                raise RealCoreError(
                    f"port {METRICS_PORT} is already in use: Core always serves its metrics there, so "
                    "another real Core (or something else) holds it; stop that one first"
                )
            self.workdir.mkdir(parents=True, exist_ok=True)
            # PostgreSQL runs as the postgres user when we are root: its state dir must sit where that
            # user can reach it, and a workdir under pytest's private temp dir is not such a place
            self.state_dir = Path(tempfile.mkdtemp(prefix="real-core-state-"))
            self.set_boom_failing(True)
            self._start_thalamus()
            self.grpc_port, self.http_port = free_port(), free_port()
            self._start_core()
            self._start_worker()
            self._heartbeats = _HeartbeatKeeper(self.grpc_target, WORKER_ID)
            self._http = httpx.Client(base_url=self.http_url, headers=self.auth_headers, timeout=15.0)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop worker, Core and token service; safe to call twice or after a failed start."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._heartbeats is not None:
            self._heartbeats.stop()
            self._heartbeats = None
        _end_process_group(self._worker)
        self._worker = None
        self._stop_core()
        _end_process_group(self._thalamus)
        self._thalamus = None
        if self.state_dir is not None:
            if not self._own_workdir and self.workdir.is_dir():
                for log in self.state_dir.glob("core.log*"):
                    shutil.copy(log, self.workdir / log.name)
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self) -> float:
        """Stop Core and start it again on the same ports and database; submit the blueprints again.

        The worker and the token service keep running: the worker reconnects by itself, and
        :meth:`wait_for_worker` (called here) returns once it has registered again. Returns the
        seconds the restart took.
        """
        began = time.monotonic()
        if self.state_dir is None:
            raise RealCoreError("restart() needs a started real Core")
        registrations = self._worker_registrations()
        if self._heartbeats is not None:
            self._heartbeats.pause()
        self._stop_core()
        # run-core truncates core.log at every start: keep the earlier runs' logs beside it
        if self.core_log_path.exists():
            runs = len(list(self.state_dir.glob("core.log.*")))
            self.core_log_path.rename(self.state_dir / f"core.log.{runs + 1}")
        self._start_core()
        # pooled connections went to the Core that stopped
        self.http.close()
        self._http = httpx.Client(base_url=self.http_url, headers=self.auth_headers, timeout=15.0)
        # The worker retries with a doubling backoff (1, 2, 4, ... s) while Core is down, so on a
        # loaded machine its next try can come well after Core is back.
        self.wait_for_worker(registrations + 1, timeout=90.0)
        if self._heartbeats is not None:
            self._heartbeats.resume()
        self.restarted_in.append(time.monotonic() - began)
        return self.restarted_in[-1]

    def _start_thalamus(self) -> None:
        port = free_port()
        script = self._release.directory / "examples" / "fake_thalamus.py"
        with open(self.thalamus_log_path, "wb") as stderr:
            self._thalamus = subprocess.Popen(
                [self.python, str(script), str(port)],
                stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
            )
        assert self._thalamus.stdout is not None
        # the first line is the token; the process then serves keys until stopped
        line = self._thalamus.stdout.readline().decode().strip()
        if not line.count(".") == 2:
            raise RealCoreError(
                f"fake Thalamus printed {line!r} instead of a JWT; see {self.thalamus_log_path}"
            )
        self.token = line
        self.jwks_url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
        if not _wait_for_port(port, 10.0):
            raise RealCoreError(f"fake Thalamus did not listen on {port}; see {self.thalamus_log_path}")

    def _start_core(self) -> None:
        run_core = self._release.directory / "run-core"
        self._core_started = True
        began = time.monotonic()
        try:
            subprocess.run(
                [str(run_core), "start", str(self.state_dir), str(self.grpc_port), str(self.http_port),
                 self.jwks_url],
                capture_output=True, text=True, check=True, timeout=self.start_timeout,
                env=self._core_env(),
            )
        except subprocess.CalledProcessError as failure:
            # run-core gives Core 60 s to open its ports; on a loaded machine a Core that is still
            # booting gets the rest of start_timeout here, while its process lives.
            left = self.start_timeout - (time.monotonic() - began)
            still_booting = "did not come up" in failure.stderr and self._core_alive()
            if not (still_booting and self._ports_open_within(left)):
                raise RealCoreError(
                    f"run-core start exited {failure.returncode}: {failure.stderr.strip()[-2000:]}"
                ) from None
        except subprocess.TimeoutExpired:
            raise RealCoreError(
                f"run-core start took more than {self.start_timeout:.0f} s; see {self.core_log_path}"
            ) from None
        self.submit_blueprints()

    def _core_env(self) -> dict[str, str]:
        """This process's environment, with ``erl_flags`` after any ERL_FLAGS of the caller's."""
        flags = " ".join(filter(None, [os.environ.get("ERL_FLAGS"), self.erl_flags]))
        return {**os.environ, "ERL_FLAGS": flags}

    def _core_alive(self) -> bool:
        try:
            os.kill(int((self.state_dir / "core.pid").read_text()), 0)
        except (OSError, ValueError, TypeError):
            return False
        return True

    def _ports_open_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        return _wait_for_port(self.grpc_port, seconds) and _wait_for_port(
            self.http_port, max(0.0, deadline - time.monotonic())
        )

    def _stop_core(self) -> None:
        if not self._core_started:
            return
        self._core_started = False
        subprocess.run(
            [str(self._release.directory / "run-core"), "stop", str(self.state_dir)],
            capture_output=True, timeout=60, check=False,
        )

    def _start_worker(self) -> None:
        # The release's worker, its steps slowed to 50 ms each by our launcher: see its docstring.
        script = self._release.directory / "examples" / "sdk_worker.py"
        launcher = Path(__file__).resolve().parent / "real_core_worker.py"
        env = {
            **os.environ, "BOOM_FLAG": str(self.boom_flag), "PYTHONUNBUFFERED": "1", "WORKER_ID": WORKER_ID
        }
        with open(self.worker_log_path, "ab") as log:
            self._worker = subprocess.Popen(
                [self.python, str(launcher), str(script), self.grpc_target],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        self.wait_for_worker(1)

    def wait_for_worker(self, registrations: int, timeout: float = 30.0) -> None:
        """Return once the worker's log shows ``registrations`` registrations with Core."""
        deadline = time.monotonic() + timeout
        while self._worker_registrations() < registrations:
            if self._worker is not None and self._worker.poll() is not None:
                raise RealCoreError(
                    f"the SDK worker exited with {self._worker.returncode}; see {self.worker_log_path}"
                )
            if time.monotonic() > deadline:
                raise RealCoreError(
                    f"the SDK worker did not register with Core within {timeout:.0f} s; "
                    f"see {self.worker_log_path}"
                )
            time.sleep(0.1)

    def _worker_registrations(self) -> int:
        return self.worker_log().count("registered successfully")

    # ---- gRPC ----------------------------------------------------------------------------------

    def add_blueprint(self, workflow: str, steps: Iterable[str]) -> None:
        """Submit one more blueprint now, and again after every restart."""
        self.blueprints[workflow] = tuple(steps)
        self.submit_blueprints([workflow])

    def submit_blueprints(self, workflows: Iterable[str] | None = None) -> None:
        """Submit the blueprints in :attr:`blueprints` (all, or those named) as the SDK does.

        The SDK sends language "python", a timeline of steps with no dependencies and a version;
        Core then sends each step to a worker that registered it.
        """
        from cerebelum_provider.proto import worker_service_pb2 as pb
        from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

        with grpc.insecure_channel(self.grpc_target) as channel:
            stub = pb_grpc.WorkerServiceStub(channel)
            for name in self.blueprints if workflows is None else workflows:
                steps = self.blueprints[name]
                blueprint = pb.Blueprint(
                    workflow_module=name,
                    language="python",
                    definition=pb.WorkflowDefinition(timeline=[pb.Step(name=step) for step in steps]),
                    version="1",
                )
                # wait_for_ready: right after a (re)start Core's gRPC listener can refuse a
                # connection for a moment (measured after restart(), on a loaded machine)
                validation = stub.SubmitBlueprint(blueprint, timeout=30, wait_for_ready=True)
                if not validation.valid:
                    raise RealCoreError(f"Core refused blueprint {name!r}: {list(validation.errors)}")

    # ---- REST ----------------------------------------------------------------------------------

    @property
    def http(self) -> httpx.Client:
        """An httpx client on :attr:`http_url` that sends the bearer token."""
        if self._http is None:
            raise RealCoreError("the real Core is not started")
        return self._http

    def start_execution(self, workflow: str, inputs: Mapping[str, Any] | None = None) -> str:
        """Start ``workflow`` over REST; return the new execution id."""
        body = {"workflow": workflow, "input": dict(inputs or {})}
        answer = self.http.post("/api/v1/executions", json=body)
        if answer.status_code != 201:
            raise RealCoreError(f"POST /api/v1/executions {workflow!r}: {answer.status_code} {answer.text}")
        return answer.json()["data"]["id"]

    def execution(self, execution_id: str) -> dict[str, Any]:
        """The REST view of one execution (``GET /api/v1/executions/{id}``)."""
        answer = self.http.get(f"/api/v1/executions/{execution_id}")
        if answer.status_code != 200:
            raise RealCoreError(f"GET execution {execution_id}: {answer.status_code} {answer.text}")
        return answer.json()

    def wait_for_state(
        self, execution_id: str, states: Iterable[str], timeout: float = 20.0
    ) -> dict[str, Any]:
        """Poll the REST view until its ``state`` is one of ``states``; return that view.

        Raises :class:`RealCoreError` naming the last state seen when ``timeout`` passes, or when
        the execution ends in a state that is not wanted.
        """
        wanted = set(states)
        deadline = time.monotonic() + timeout
        while True:
            view = self.execution(execution_id)
            if view["state"] in wanted:
                return view
            if view["state"] in TERMINAL_STATES:
                raise RealCoreError(
                    f"execution {execution_id} ended {view['state']!r} (error {view.get('error')!r}), "
                    f"not one of {sorted(wanted)}"
                )
            if time.monotonic() > deadline:
                raise RealCoreError(
                    f"execution {execution_id} still {view['state']!r} after {timeout:.0f} s, "
                    f"not one of {sorted(wanted)}"
                )
            time.sleep(0.1)

    def events(self, execution_id: str) -> list[dict[str, Any]]:
        """The execution's event log (``GET /api/v1/executions/{id}/events``), oldest first."""
        answer = self.http.get(f"/api/v1/executions/{execution_id}/events")
        if answer.status_code != 200:
            raise RealCoreError(f"GET events of {execution_id}: {answer.status_code} {answer.text}")
        return answer.json()["events"]

    def wait_for_event(
        self, execution_id: str, event_type: str, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Poll the event log until it holds an ``event_type`` event and no gap; return the log.

        Core writes events in batches a little after the engine moves on, so an execution can read
        as completed before its ExecutionCompletedEvent is stored; anything that reads the log (the
        list, a view's ``current_step``) waits for this first. The batches do not land in order
        either: on a loaded machine the log once held the completion (version 4) before the steps
        (versions 1 to 3), so the log is whole only when its versions run 0, 1, 2... without a gap.
        """
        deadline = time.monotonic() + timeout
        while True:
            events = self.events(execution_id)
            whole = [event.get("version") for event in events] == list(range(len(events)))
            if whole and any(event["type"] == event_type for event in events):
                return events
            if time.monotonic() > deadline:
                raise RealCoreError(
                    f"no {event_type} in the event log of {execution_id} after {timeout:.0f} s: "
                    f"{[event['type'] for event in events]}"
                )
            time.sleep(0.1)

    def executions_total(self, workflow: str) -> int:
        """How many executions of ``workflow`` Core has stored (the REST list's ``total``)."""
        answer = self.http.get("/api/v1/executions", params={"workflow": workflow, "limit": 1})
        if answer.status_code != 200:
            raise RealCoreError(f"GET executions of {workflow!r}: {answer.status_code} {answer.text}")
        return int(answer.json()["total"])

    # ---- Core's log ----------------------------------------------------------------------------

    def core_log(self) -> str:
        """Everything Core logged since the stack started, every run's log in order."""
        if self.state_dir is None:
            return ""
        earlier = sorted(
            self.state_dir.glob("core.log.*"), key=lambda path: int(path.suffix.lstrip(".") or 0)
        )
        text = []
        for path in [*earlier, self.core_log_path]:
            try:
                text.append(path.read_text(errors="replace"))
            except FileNotFoundError:
                pass
        return "".join(text)

    def status_reads(self, execution_id: str, api: str) -> int:
        """How many status queries for ``execution_id`` Core received over ``api`` ("grpc" or "http").

        Counted from Core's own log: its gRPC handler logs "Getting execution status for: ID" and
        Phoenix logs every request line ("GET /api/v1/executions/ID"), so a client's retries show.
        """
        if api == "grpc":
            line = re.compile(rf"\[info\] Getting execution status for: {re.escape(execution_id)}$")
        elif api == "http":
            line = re.compile(rf"\[info\] GET /api/v1/executions/{re.escape(execution_id)}$")
        else:
            raise ValueError(f"api must be 'grpc' or 'http', got {api!r}")
        return sum(1 for text in self.core_log().splitlines() if line.search(text))

    # ---- worker --------------------------------------------------------------------------------

    def worker_log(self) -> str:
        """Everything the worker printed so far."""
        try:
            return self.worker_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, which: str, lines: int = 40) -> str:
        """The last ``lines`` lines of Core's log ("core") or the worker's ("worker"), token masked.

        Core's Elixir reports span many lines each; a failing test's report shows this tail.
        """
        path = {"core": self.core_log_path, "worker": self.worker_log_path}[which]
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return f"({path} does not exist)"
        tail = "\n".join(text.splitlines()[-lines:])
        return tail.replace(self.token, "***") if self.token else tail

    def steps_run(self, execution_id: str) -> list[str]:
        """The step names the worker ran for ``execution_id``, in order (from its log)."""
        steps = []
        for line in self.worker_log().splitlines():
            match = _STEP_LINE.match(line)
            if match and match.group(2) == execution_id:
                steps.append(match.group(1))
        return steps

    def set_boom_failing(self, failing: bool) -> None:
        """Make the worker's ``boom`` step raise (``True``) or return (``False``) from now on."""
        if failing:
            self.boom_flag.touch()
        else:
            self.boom_flag.unlink(missing_ok=True)


def main() -> None:
    """Start the stack, print its addresses and token, run until Ctrl-C or SIGTERM, then stop it.

    ``--check`` only says whether the release is there: exit 0, or the reason and exit 1.
    """
    release = find_release()
    if release.missing:
        sys.exit(release.missing)
    if sys.argv[1:] == ["--check"]:
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with RealCore(release) as core:
        print(f"real Core {core.release} up in {core.started_in:.1f} s", flush=True)
        print(f"grpc={core.grpc_target} http={core.http_url} workdir={core.workdir}", flush=True)
        print(f"token={core.token}", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
