"""Start a real Airflow (and a Cerebelum Core emulator) as separate processes, drive it over REST.

Used by ``scripts/demo.py`` and by the end-to-end tests. Everything here runs other programs:
the emulator CLI, ``airflow db migrate``, and the four Airflow services (scheduler,
dag-processor, triggerer, api-server), each in its own process group with its output in a log
file, so that :meth:`AirflowStack.stop` can end every process it started and nothing else.
``AirflowStack(database="postgresql", triggerers=2)`` is Airflow as it runs across machines: its
metadata database in a private PostgreSQL 15 cluster (:class:`PostgresCluster`), and two
triggerers, each under its own host name (``triggerer-1``, ``triggerer-2``).

Typical use::

    with EmulatorProcess(db_path=work / "core.sqlite", demo=True) as core, AirflowStack(
        home=work / "airflow", dags_folder=REPO / "example_dags",
        connections={"cerebelum_default": f"cerebelum://127.0.0.1:{core.http_port}"},
    ) as airflow:
        run_id = airflow.trigger_dag("example_cerebelum_wait", conf={"execution_id": "..."})
        result = airflow.wait_for_run(
            "example_cerebelum_wait", run_id, on_change=lambda change: print(change.describe())
        )
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
AIRFLOW_BIN = str(VENV_BIN / "airflow")
EMULATOR_BIN = str(VENV_BIN / "cerebelum-emulator")

#: The four long-running Airflow services; each gets its own process.
AIRFLOW_SERVICES = ("scheduler", "dag-processor", "triggerer", "api-server")
#: Seconds between the REST polls of the waits below (runs, DAGs). Each poll costs the api-server
#: about 25 ms of CPU a request, and the test suite is CPU-bound on two cores: at 0.25 s a waiting
#: test kept a fifth of a core busy answering it.
POLL_INTERVAL = 1.0
#: Debian's PostgreSQL 15 (``apt-get install postgresql-15``), as the real-Core stage uses.
PG_BIN = Path("/usr/lib/postgresql/15/bin")
#: DAG run states after which Airflow will not move a run on by itself.
FINISHED_RUN_STATES = frozenset({"success", "failed"})

#: Where migrated metadata databases are kept, one per Airflow version (an ignored folder).
DB_TEMPLATE_DIR = REPO / ".airflow" / "db-templates"

LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"

_LISTENING = re.compile(r"listening on (\S+):(\d+) \(REST (http://\S+):(\d+)\)")


class StackError(RuntimeError):
    """A process did not start, did not become healthy in time, or the REST API refused a call."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port() -> int:
    """A port that refuses connections (bound then released; nothing listens on it)."""
    return free_port()


def airflow_version() -> str:
    """The installed apache-airflow version, read without importing Airflow."""
    from importlib.metadata import version

    return version("apache-airflow")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class ManagedProcess:
    """A child process in its own process group, with stdout and stderr in one log file."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
        if self.popen.poll() is not None:
            self.signal_group(signal.SIGKILL)  # children it left behind, if any
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10.0)  # SIGKILL cannot be refused; this only reaps it

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)  # the group id is the child's pid (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass


def copy_of_template(template: Path, target: Path, make: Callable[[], None]) -> None:
    """Make ``target`` a copy of ``template``; where there is none yet, ``make()`` creates ``target``
    and a copy of it becomes the template. Processes that start together take turns under a file
    lock: the first makes it, the others copy it (a migrated Airflow database costs seconds of CPU).
    """
    template.parent.mkdir(parents=True, exist_ok=True)
    with open(template.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not template.exists():
            make()
            partial = template.with_suffix(f".{os.getpid()}.tmp")
            shutil.copyfile(target, partial)
            os.replace(partial, template)  # atomic: a reader without the lock sees all or nothing
            return
    shutil.copyfile(template, target)


def stop_all(processes: Iterable[ManagedProcess], grace: float = 10.0) -> None:
    """Stop several processes at once: SIGTERM to all, then wait, then SIGKILL what is left."""
    processes = list(processes)
    for process in processes:
        if process.alive():
            process.signal_group(signal.SIGTERM)
            # A service a test paused (``AirflowStack.pause_service``) handles the SIGTERM once woken.
            process.signal_group(signal.SIGCONT)
    deadline = time.monotonic() + grace
    for process in processes:
        process.stop(grace=max(0.1, deadline - time.monotonic()))


def spawn(
    name: str, argv: list[str], *, env: dict[str, str], log_path: Path, cwd: Path = REPO
) -> ManagedProcess:
    """Start ``argv`` in a new session (its own process group), output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ManagedProcess(name, popen, log_path)


def _as_postgres(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: run its programs as the postgres user then.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PostgresCluster:
    """A private PostgreSQL 15 cluster on a free loopback port, for Airflow's metadata database.

    Made as ``shared/real-core/run-core`` makes Core's: ``initdb`` with trust auth in a fresh
    directory (reachable by the postgres user when we are root), ``pg_ctl start``, one database.
    fsync is off: a test's database need not survive a power cut. :meth:`stop` stops the server
    and removes the directory.
    """

    def __init__(self, *, log_path: Path, database: str = "airflow", max_connections: int = 300) -> None:
        self.log_path = Path(log_path)
        self.database = database
        self.max_connections = max_connections
        self.port = 0
        self.state_dir: Path | None = None

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the database (psycopg2)."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def dsn(self) -> str:
        """The libpq connection string of the database, for psycopg2.connect."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={self.database}"

    def start(self) -> PostgresCluster:
        """Create and start the cluster and its database.

        Raises:
            StackError: PostgreSQL 15 is not installed, or a step failed (its output is in the message).
        """
        import tempfile

        if not (PG_BIN / "initdb").exists():
            raise StackError(f"PostgreSQL 15 is missing ({PG_BIN}): apt-get install postgresql-15")
        # Not under pytest's private temp dir: the postgres user must reach it.
        self.state_dir = Path(tempfile.mkdtemp(prefix="airflow-pg-"))
        data, run = self.state_dir / "pgdata", self.state_dir / "pgrun"
        data.mkdir(mode=0o700)
        run.mkdir()
        if os.geteuid() == 0:
            os.chmod(self.state_dir, 0o711)
            shutil.chown(data, "postgres", "postgres")
            shutil.chown(run, "postgres", "postgres")
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        options = (
            f"-p {self.port} -k {run} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c synchronous_commit=off -c full_page_writes=off -c max_connections={self.max_connections}"
        )
        self._run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        self._run(
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(run / "pg.log"), "-o", options, "start"]
        )
        self._run(
            [
                str(PG_BIN / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                self.database,
            ]
        )
        return self

    def _run(self, argv: list[str]) -> None:
        with open(self.log_path, "ab") as log:
            done = subprocess.run(
                _as_postgres(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=120,
            )
        if done.returncode != 0:
            raise StackError(
                f"{Path(argv[0]).name} failed (exit {done.returncode}); its log:\n{_tail(self.log_path)}"
            )

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory; safe to call twice."""
        if self.state_dir is None:
            return
        data = self.state_dir / "pgdata"
        if (data / "postmaster.pid").exists():
            with open(self.log_path, "ab") as log:
                subprocess.run(
                    _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=60,
                    check=False,
                )
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_dir = None


class EmulatorProcess:
    """The Core emulator CLI as a subprocess serving both APIs, each on a free port.

    ``address`` (gRPC, ``host:port``), ``http_url`` and ``http_port`` (REST) are read from the line
    it prints when it listens. ``scenario`` (workflows and executions, as ``--scenario`` reads them)
    is written beside ``db_path`` and seeds it. Use as a context manager or call :meth:`start` and
    :meth:`stop`.
    """

    def __init__(
        self,
        *,
        db_path: Path,
        log_path: Path | None = None,
        demo: bool = False,
        step_seconds: float | None = None,
        scenario: dict[str, Any] | None = None,
        extra_args: Iterable[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self.db_path = Path(db_path)
        self.log_path = Path(log_path) if log_path else self.db_path.with_suffix(".log")
        self.demo = demo
        self.step_seconds = step_seconds
        self.scenario = scenario
        self.scenario_path = self.db_path.with_name(f"{self.db_path.stem}-scenario.json")
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.address: str = ""
        self.http_url: str = ""
        self.http_port: int = 0
        self._process: ManagedProcess | None = None

    def argv(self) -> list[str]:
        argv = [EMULATOR_BIN, "serve", "--port", "0", "--http-port", "0", "--host", "127.0.0.1"]
        argv += ["--db", str(self.db_path)]
        if self.demo:
            argv.append("--demo")
        if self.step_seconds is not None:
            argv += ["--step-seconds", str(self.step_seconds)]
        if self.scenario is not None:
            argv += ["--scenario", str(self.scenario_path)]
        return argv + self.extra_args

    def start(self) -> EmulatorProcess:
        """Start the emulator and wait until it prints its address.

        Raises:
            StackError: it exited or printed no address within ``startup_timeout``.
        """
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        if self.scenario is not None:
            self.scenario_path.write_text(json.dumps(self.scenario))
        self.log_path.write_bytes(b"")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._process = spawn("emulator", self.argv(), env=env, log_path=self.log_path)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log_path.read_text(errors="replace"))
            if match:
                self.address = f"{match.group(1)}:{match.group(2)}"
                self.http_url, self.http_port = f"{match.group(3)}:{match.group(4)}", int(match.group(4))
                return self
            if not self._process.alive():
                break
            time.sleep(0.05)
        self.stop()
        raise StackError(f"the Core emulator did not start; its log:\n{_tail(self.log_path)}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclass(frozen=True)
class TaskStateChange:
    """One task instance seen in a new state by :meth:`AirflowStack.wait_for_run`."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    previous: str | None
    state: str | None
    elapsed: float

    def describe(self) -> str:
        task = self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"
        return f"{self.elapsed:6.1f}s  {self.dag_id}.{task}: {self.previous or '-'} -> {self.state or 'none'}"


@dataclass
class RunResult:
    """How a DAG run ended and every state each of its task instances went through."""

    dag_id: str
    run_id: str
    state: str
    #: Each task's states in the order they were seen.
    task_states: dict[str, list[str]] = field(default_factory=dict)
    #: The REST API's task instance record at each change, e.g. the ``trigger`` and
    #: ``triggerer_job`` it showed while ``deferred``.
    snapshots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.state == "success"


def airflow_env(
    home: Path,
    *,
    dags_folder: Path,
    api_port: int,
    extra_dag_folders: dict[str, Path] | None = None,
    connections: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment every Airflow process of one stack shares.

    SQLite metadata database and LocalExecutor; SimpleAuthManager with every caller an admin,
    so that the REST API and the UI work without a login; short scheduler and parser intervals
    so that a DAG file is picked up and a run scheduled within seconds on a small machine.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AIRFLOW__") and not key.startswith("AIRFLOW_CONN_")
    }
    base_url = f"http://127.0.0.1:{api_port}"
    secrets_file = home / "stack-secrets.json"
    # Generated once per AIRFLOW_HOME and shared by every process of the stack: the api-server
    # signs the tokens that task processes present, and all must decrypt the same connections.
    stack_secrets = json.loads(secrets_file.read_text()) if secrets_file.exists() else {}
    stack_secrets.setdefault("jwt_secret", secrets.token_urlsafe(64))
    stack_secrets.setdefault("api_secret", secrets.token_urlsafe(32))
    # Connection passwords (tokens) saved through the UI are stored encrypted.
    stack_secrets.setdefault("fernet_key", Fernet.generate_key().decode())
    secrets_file.write_text(json.dumps(stack_secrets))
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": stack_secrets["api_secret"],
            "AIRFLOW__API_AUTH__JWT_SECRET": stack_secrets["jwt_secret"],
            "AIRFLOW__CORE__FERNET_KEY": stack_secrets["fernet_key"],
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
            # Idle scheduler loops one second apart (Airflow's default): half a second cost the idle
            # scheduler 1.5x the CPU (3.2 CPU s a minute against 2.1), a fifth more again (bench/RESULTS.md
            # "an idle Airflow stack"), on a machine the tests share; a run waits a second at most.
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # A new file is seen within REFRESH_INTERVAL and a changed one is parsed again at once
            # (file_parsing_sort_mode "modified_time"); reparsing unchanged files every few seconds
            # was three quarters of an idle stack's CPU. AirflowStack.unpause asks for the parse that
            # registers an unpaused DAG's asset watchers.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
            "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            # The first Execution API call of a process (a task's start, the triggerer's first
            # connection lookup) waits while Airflow builds that API, 10-40 s on a loaded 2-core
            # machine; the default 5 s per attempt ran out of retries and failed the lookup.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # Free ports, so that two stacks (a demo and a test run) can run side by side.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
            "NO_COLOR": "1",
        }
    )
    if extra_dag_folders:
        # One LocalDagBundle per folder: the dags folder plus, e.g., DAGs that only tests use.
        bundles = [{"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {}}]
        bundles += [
            {"name": name, "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(folder)}}
            for name, folder in extra_dag_folders.items()
        ]
        env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(bundles)
    for conn_id, uri in (connections or {}).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = uri
    env.update(extra or {})
    return env


class AirflowStack:
    """A real Airflow: scheduler, dag-processor, triggerer and api-server as separate processes.

    ``home`` becomes ``AIRFLOW_HOME`` (SQLite metadata database and logs inside it; it is
    created when missing and reused when present, so a second start skips nothing but the
    migration work already done). ``connections`` maps connection ids to URIs, passed to every
    process as ``AIRFLOW_CONN_<ID>`` environment variables. ``extra_dag_folders`` maps bundle
    names to more folders of DAG files, parsed next to ``dags_folder``.

    ``database="postgresql"`` keeps the metadata database in a private PostgreSQL 15 cluster
    (:attr:`postgres`) instead of SQLite; ``triggerers=2`` starts two triggerer processes,
    ``triggerer-1`` and ``triggerer-2``, each reporting that name as its host (the task instances'
    ``triggerer_job.hostname`` says which holds a trigger) and serving its logs on its own port.

    ``users`` (name -> SimpleAuthManager role, one of them an ``admin``) turns the login on: every
    caller is no longer an admin, each user gets a generated password (:attr:`passwords`), and
    :meth:`request` calls the REST API as the first admin. ``services`` starts only some of the
    four services (the api-server always), e.g. ``("api-server",)`` for a UI-only test.
    """

    def __init__(
        self,
        *,
        home: Path,
        dags_folder: Path,
        connections: dict[str, str] | None = None,
        extra_dag_folders: dict[str, Path] | None = None,
        extra_env: dict[str, str] | None = None,
        api_port: int | None = None,
        startup_timeout: float = 300.0,
        users: dict[str, str] | None = None,
        services: Iterable[str] = AIRFLOW_SERVICES,
        database: str = "sqlite",
        triggerers: int = 1,
    ) -> None:
        if database not in ("sqlite", "postgresql"):
            raise ValueError(f"database must be 'sqlite' or 'postgresql', got {database!r}")
        if isinstance(triggerers, bool) or not isinstance(triggerers, int) or triggerers < 1:
            raise ValueError(f"triggerers must be a whole number >= 1, got {triggerers!r}")
        self.database = database
        self.triggerers = triggerers
        self.postgres: PostgresCluster | None = None
        self._commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.home = Path(home)
        self.dags_folder = Path(dags_folder)
        self.connections = dict(connections or {})
        self.extra_dag_folders = dict(extra_dag_folders or {})
        self.extra_env = dict(extra_env or {})
        self.api_port = api_port or free_port()
        self.startup_timeout = startup_timeout
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.logs_dir = self.home / "service-logs"
        self.processes: dict[str, ManagedProcess] = {}
        self.timings: dict[str, float] = {}
        self.env: dict[str, str] = {}
        self._http: httpx.Client | None = None
        self.users = dict(users or {})
        self.passwords = {name: secrets.token_urlsafe(12) for name in self.users}
        self.services = tuple(
            service for service in AIRFLOW_SERVICES if service in set(services) | {"api-server"}
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> AirflowStack:
        """Migrate the metadata database, start the four services and wait until all are healthy.

        Raises:
            StackError: a step failed or a service was not healthy within ``startup_timeout``
                (every process started so far is stopped first).
        """
        started = time.monotonic()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            database_env = {}
            if self.database == "postgresql":
                self.postgres = PostgresCluster(log_path=self.logs_dir / "postgres.log").start()
                database_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.postgres.url
                self.timings["postgres"] = time.monotonic() - started
            self.env = airflow_env(
                self.home,
                dags_folder=self.dags_folder,
                api_port=self.api_port,
                extra_dag_folders=self.extra_dag_folders,
                connections=self.connections,
                extra={**database_env, **self._login_env(), **self.extra_env},
            )
            if self.postgres is not None:
                self._run_migrate()
            else:
                self._migrate()
            self.timings["db_migrate"] = time.monotonic() - started
            for service in self.services:
                for name, env in self._instances(service):
                    self._commands[name] = ([AIRFLOW_BIN, service], env)
                    self.start_service(name)
            self._http = httpx.Client(base_url=self.base_url, timeout=30.0)
            self._wait_healthy(started + self.startup_timeout)
            if self.users:
                admin = next(name for name, role in self.users.items() if role == "admin")
                self._http.headers["Authorization"] = f"Bearer {self.login_token(admin)}"
            self.timings["startup"] = time.monotonic() - started
        except BaseException:
            self.stop()
            raise
        return self

    def _instances(self, service: str) -> list[tuple[str, dict[str, str]]]:
        """The processes of ``service``: their names and environments."""
        if service != "triggerer" or self.triggerers == 1:
            return [(service, self.env)]
        python_path = os.pathsep.join(filter(None, [str(REPO / "scripts"), self.env.get("PYTHONPATH")]))
        return [
            (
                f"triggerer-{number}",
                {
                    **self.env,
                    "PYTHONPATH": python_path,
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "stack_hostname.hostname",
                    "STACK_PROCESS_HOSTNAME": f"triggerer-{number}",
                    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                },
            )
            for number in range(1, self.triggerers + 1)
        ]

    def instance_names(self, service: str) -> list[str]:
        """The names of ``service``'s processes once the stack has started: ``service`` itself, or
        ``triggerer-1`` ... ``triggerer-N`` for several triggerers."""
        return [name for name in self._commands if name == service or name.startswith(f"{service}-")]

    def start_service(self, name: str, **env: str) -> None:
        """Start the process ``name`` (a service, or ``triggerer-N``) with ``env`` added."""
        argv, base_env = self._commands[name]
        self.processes[name] = spawn(
            name, argv, env={**base_env, **env}, log_path=self.logs_dir / f"{name}.log"
        )

    def kill_service(self, name: str) -> None:
        """SIGKILL the process ``name`` and everything in its group, as a machine that dies does."""
        process = self.processes.pop(name)
        process.signal_group(signal.SIGKILL)
        process.popen.wait(timeout=30.0)

    def pause_service(self, name: str) -> None:
        """SIGSTOP the process ``name`` and its group: alive, but neither heartbeating nor working."""
        self.processes[name].signal_group(signal.SIGSTOP)

    def resume_service(self, name: str) -> None:
        """SIGCONT what ``pause_service`` stopped."""
        self.processes[name].signal_group(signal.SIGCONT)

    def _login_env(self) -> dict[str, str]:
        """The SimpleAuthManager settings of ``users``: their roles and a passwords file."""
        if not self.users:
            return {}
        passwords_file = self.home / "simple-auth-passwords.json"
        passwords_file.write_text(json.dumps(self.passwords))
        return {
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{n}:{r}" for n, r in self.users.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        }

    def login_token(self, user: str) -> str:
        """A JWT for ``user`` from SimpleAuthManager's ``POST /auth/token`` (its password)."""
        response = httpx.post(
            f"{self.base_url}/auth/token",
            json={"username": user, "password": self.passwords[user]},
            timeout=30.0,
        )
        if response.status_code not in (200, 201):
            raise StackError(f"logging in as {user!r} answered {response.status_code}: {response.text[:300]}")
        return response.json()["access_token"]

    def _migrate(self) -> None:
        """Create the metadata database: a copy of a cached migrated one, else ``airflow db migrate``.

        A migrated SQLite database holds nothing specific to one AIRFLOW_HOME, so the first
        migration (several CPU seconds) is kept under ``.airflow/`` per Airflow version and copied.
        Stacks started at once (the e2e and real-Core stages start theirs together) migrate once
        (``copy_of_template``).
        """
        database = self.home / "airflow.db"
        if database.exists():
            self._run_migrate()
            self._use_wal()
            return
        copy_of_template(DB_TEMPLATE_DIR / f"airflow-{airflow_version()}.db", database, self._run_migrate)
        self._use_wal()

    def _run_migrate(self) -> None:
        log_path = self.logs_dir / "db-migrate.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            done = subprocess.run(
                [AIRFLOW_BIN, "db", "migrate"],
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=self.startup_timeout,
            )
        if done.returncode != 0:
            raise StackError(f"airflow db migrate failed; its log:\n{_tail(log_path)}")

    def _use_wal(self) -> None:
        # WAL (a persistent property of the file): readers no longer block the writer. In the
        # default rollback journal, a REST read and a task's state update in the api-server can
        # wait on each other's locks for the whole SQLite busy timeout, stalling a task start by
        # tens of seconds.
        database = sqlite3.connect(self.home / "airflow.db")
        try:
            database.execute("PRAGMA journal_mode=WAL")
        finally:
            database.close()

    def _wait_healthy(self, deadline: float) -> None:
        last_problem = "the api-server did not answer"
        warmed_up = False
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if not process.alive():
                    raise StackError(
                        f"airflow {name} exited with code {process.popen.returncode}; "
                        f"its log:\n{_tail(process.log_path)}"
                    )
            try:
                health = self._http.get("/api/v2/monitor/health").json()
            except (httpx.HTTPError, ValueError) as error:
                last_problem = f"the api-server did not answer ({error.__class__.__name__})"
            else:
                if not warmed_up:
                    self._warm_up_execution_api()
                    warmed_up = True
                components = ["metadatabase"] + [
                    service.replace("-", "_") for service in self.services if service != "api-server"
                ]
                unhealthy = [
                    component
                    for component in components
                    if (health.get(component) or {}).get("status") != "healthy"
                ]
                if not unhealthy:
                    return
                last_problem = "not yet healthy: " + ", ".join(unhealthy)
            time.sleep(0.3)
        raise StackError(f"Airflow did not become healthy in {self.startup_timeout:.0f}s: {last_problem}")

    def _warm_up_execution_api(self) -> None:
        # The api-server builds its versioned Execution API app on the first /execution/ request,
        # blocking every request for 10-20 s on a small machine. Pay that now rather than when
        # the first task starts (its start would stall and its API client would time out).
        self._http.get("/execution/health", timeout=120.0)

    def stop(self) -> None:
        """Stop every process this stack started (SIGTERM, then SIGKILL); safe to call twice."""
        if self._http is not None:
            self._http.close()
            self._http = None
        stop_all(self.processes.values())
        self.processes.clear()
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- REST ------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, expect: Iterable[int] = (200,), **kwargs: Any) -> Any:
        """Call the REST API; returns the decoded JSON body (None when empty).

        Raises:
            StackError: the answer's status is not in ``expect``.
        """
        if self._http is None:
            raise StackError("the stack is not started")
        response = self._http.request(method, path, **kwargs)
        if response.status_code not in tuple(expect):
            raise StackError(f"{method} {path} answered {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 90.0) -> None:
        """Wait until the dag-processor has parsed and stored every DAG in ``dag_ids``.

        Raises:
            StackError: one is still missing after ``timeout`` seconds, or a DAG file failed to import.
        """
        wanted = set(dag_ids)
        deadline = time.monotonic() + timeout
        while True:
            dags = self.request("GET", "/api/v2/dags", params={"limit": 100})["dags"]
            known = {dag["dag_id"] for dag in dags}
            if wanted <= known:
                return
            errors = self.request("GET", "/api/v2/importErrors")["import_errors"]
            if errors:
                details = "\n".join(f"{e['filename']}: {e['stack_trace']}" for e in errors)
                raise StackError(f"DAG files failed to import:\n{details}")
            if time.monotonic() > deadline:
                raise StackError(f"DAGs not parsed after {timeout:.0f}s: {sorted(wanted - known)}")
            time.sleep(POLL_INTERVAL)

    def unpause(self, dag_id: str) -> None:
        """Unpause ``dag_id`` and have its file parsed again now: Airflow registers the asset watchers
        of an unpaused DAG only when it parses the DAG's file, and this stack parses an unchanged file
        again only every ten minutes (``min_file_process_interval``)."""
        self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        file_token = self.request("GET", f"/api/v2/dags/{dag_id}/details")["file_token"]
        # 409: a request to parse that file is already waiting, which does the same.
        self.request("PUT", f"/api/v2/parseDagFile/{file_token}", expect=(201, 409))

    def pause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": True})

    def restart_service(self, service: str, **env: str) -> None:
        """Stop one service's process (SIGTERM, as a deploy does) and start a new one in its place,
        with ``env`` added to the stack's environment (e.g. a setting only this phase needs)."""
        self.processes[service].stop()
        self.start_service(service, **env)

    def asset_triggered_runs(self, dag_id: str) -> list[str]:
        """The ids of ``dag_id``'s runs that an asset event started (the first 100)."""
        runs = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})
        return [run["dag_run_id"] for run in runs["dag_runs"] if run["run_type"] == "asset_triggered"]

    def trigger_dag(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Unpause ``dag_id`` and start a run of it now; returns the run id."""
        self.unpause(dag_id)
        body = {"logical_date": None, "conf": conf or {}}
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """The XCom value a task pushed (deserialized), or None when it pushed none."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        entry = self.request("GET", path, params={"deserialize": True}, expect=(200, 404))
        if entry is None or "value" not in entry:
            return None
        value = entry["value"]
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def wait_for_runs(
        self,
        runs: Iterable[tuple[str, str]],
        *,
        timeout: float = 180.0,
        poll_interval: float = POLL_INTERVAL,
        on_change: Callable[[TaskStateChange], None] | None = None,
    ) -> dict[tuple[str, str], RunResult]:
        """Poll task instances of several DAG runs until every run has finished.

        ``on_change`` is called for each task instance state change as it is seen. Returns a
        :class:`RunResult` per ``(dag_id, run_id)``.

        Raises:
            StackError: a run is still going after ``timeout`` seconds.
        """
        pending = list(runs)
        results = {run: RunResult(run[0], run[1], state="queued") for run in pending}
        seen: dict[tuple[str, str, str, int], str | None] = {}
        started = time.monotonic()
        while pending:
            for dag_id, run_id in list(pending):
                result = results[(dag_id, run_id)]
                for ti in self.task_instances(dag_id, run_id):
                    key = (dag_id, run_id, ti["task_id"], ti.get("map_index", -1))
                    if key not in seen and ti["state"] is None:
                        seen[key] = None  # created, not scheduled yet: no state to report
                    elif key not in seen or seen[key] != ti["state"]:
                        change = TaskStateChange(
                            dag_id,
                            run_id,
                            key[2],
                            key[3],
                            seen.get(key),
                            ti["state"],
                            time.monotonic() - started,
                        )
                        seen[key] = ti["state"]
                        result.task_states.setdefault(ti["task_id"], []).append(ti["state"])
                        result.snapshots.setdefault(ti["task_id"], []).append(ti)
                        if on_change is not None:
                            on_change(change)
                result.state = self.run_state(dag_id, run_id)
                if result.state in FINISHED_RUN_STATES:
                    pending.remove((dag_id, run_id))
            if pending and time.monotonic() - started > timeout:
                names = ", ".join(f"{dag_id}/{run_id}" for dag_id, run_id in pending)
                raise StackError(f"DAG runs still going after {timeout:.0f}s: {names}")
            if pending:
                time.sleep(poll_interval)
        return results

    def wait_for_run(self, dag_id: str, run_id: str, **kwargs: Any) -> RunResult:
        """:meth:`wait_for_runs` for one run."""
        return self.wait_for_runs([(dag_id, run_id)], **kwargs)[(dag_id, run_id)]

    def answer_hitl(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        answer: dict[str, Any],
        *,
        map_index: int = -1,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Answer a parked human-in-the-loop task as a person does in the Required actions page
        (``PATCH .../hitlDetails``, ``answer`` = ``{"chosen_options", "params_input"}``); returns the
        request the person was shown.

        Waits first until the scheduler has heard that the parked try's worker exited: Airflow 3.3
        fails a task resumed before that event arrives ("executor reported success, but the task
        instance's state is running"), and a loaded LocalExecutor reports it seconds late.
        """
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"
        shown = self.request("GET", path)
        parked_exit = (
            "Received executor event with state success for task instance TaskInstanceKey("
            f"dag_id='{dag_id}', task_id='{task_id}', run_id='{run_id}'"
        )
        deadline = time.monotonic() + timeout
        while parked_exit not in self.service_log("scheduler"):
            if time.monotonic() > deadline:
                raise StackError(f"the scheduler did not see {dag_id}.{task_id} park within {timeout:.0f}s")
            time.sleep(0.5)
        self.request("PATCH", path, json=answer)
        return shown

    def service_log(self, service: str) -> str:
        """The whole log file of one service (``"triggerer"``, ``"scheduler"``...)."""
        return (self.logs_dir / f"{service}.log").read_text(errors="replace")


def fresh_dir(path: Path) -> Path:
    """Empty ``path`` (removing what a previous run left) and return it."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
