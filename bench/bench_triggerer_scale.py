"""N deferred sensors in a real ``airflow triggerer`` against Core's rate limit: per-execution vs coalesced.

A real Airflow stack (``AirflowStack(database="postgresql")``, as bench_triggerer_failover.py
starts it: PostgreSQL 15 metadata database, the api-server, and an ``airflow triggerer`` whose
``[triggerer] capacity`` holds every wait) and one Core emulator per mode, each in its own
process, serving Core's REST API with Core's rate limit on (1,000 requests a calendar minute,
then 429 with ``retry-after``).

The deferred task instances are written directly, not run through workers (N task runs would
take longer than the measurement on a 2-core machine): the dag-processor parses
``triggerer_scale_dags`` (``CerebelumExecutionSensor`` deferrable, mapped over N), a helper
process with the stack's environment creates a run of it with Airflow's own
``SerializedDAG.create_dagrun`` (which expands the mapped task into N task instances), and for
each task instance does what the Execution API does when the sensor's worker defers
(``ti_update_state`` with a ``TIDeferredStatePayload``): a ``Trigger`` row holding the
``CerebelumExecutionTrigger`` the sensor builds, its arguments serialized by ``airflow.sdk.serde``
as the task runner does, and the task instance set DEFERRED with that trigger, ``next_method``
``execute_complete`` and the trigger timeout.

Per mode, on a fresh emulator and a fresh triggerer process (started once the N triggers are
written):

- per_execution: ``coalesce_polling=false`` and a request budget too large to bind, i.e. every
  wait reads its own execution every interval, as before coalescing;
- coalesced: the connection's defaults (``coalesce_polling`` on, ``request_budget`` 900).

Once every trigger is assigned and ``--settle`` seconds have passed, executions complete at a
steady rate for ``--duration`` seconds. Reported: requests a minute Core received and refused
(429), list pages and status reads among them, time from an execution completing to its task
instance leaving DEFERRED (the triggerer sets it SCHEDULED with the event:
``task_instance.updated_at``; p50, p99), the triggerer's CPU (the supervisor and its
trigger-runner process), its peak resident memory, and the worst "Triggerer's async thread was
blocked for X seconds" line it logged in the window.

``--triggerers N`` (N > 1) starts N triggerer processes (``AirflowStack(triggerers=N)``:
``triggerer-1`` ... ``triggerer-N``, each its own host name) once every trigger is written, and
Airflow spreads the triggers over them (each takes up to ``--select-per-loop`` a loop, up to its
capacity, N + 100 as with one). The coalesced connection's ``request_budget`` is then set as the
README tells users: the default divided by N (each triggerer caps its own requests at its share).
Reported besides: the triggers each triggerer held (``trigger`` joined with its ``job``), CPU
summed over every triggerer's processes, the largest triggerer's peak memory, and the worst
"blocked" line of any triggerer's log. Figures go to their own RESULTS.md section.

    .venv/bin/python bench/bench_triggerer_scale.py --waits 10000 --duration 120
    .venv/bin/python bench/bench_triggerer_scale.py --waits 200 --settle 20 --duration 30 --no-write
    .venv/bin/python bench/bench_triggerer_scale.py --waits 300 --triggerers 2 --select-per-loop 50 \
        --modes coalesced --settle 10 --duration 20 --no-write
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import PYTHON, ROOT, RemoteCore, machine, percentile, table, write_section

from cerebelum_provider.hooks._connection import DEFAULT_REQUEST_BUDGET

DAG_ID = "bench_triggerer_scale"
DAGS = Path(__file__).resolve().parent / "triggerer_scale_dags"
WORKFLOW = "orders"
MODES = ("per_execution", "coalesced")
EXTRAS = {
    "per_execution": "api=http&coalesce_polling=false&request_budget=1000000000",
    "coalesced": "api=http",
}
_BLOCKED = re.compile(r"Triggerer's async thread was blocked for ([0-9.]+) seconds")
#: How long every deferred task may wait (the sensor's ``timeout``): far past the benchmark.
TASK_TIMEOUT = 6 * 3600.0
#: Mapped task instances per DAG run (the DAG's map width).
MAP_WIDTH = 100


def request_budget(mode: str, args: argparse.Namespace) -> float | None:
    """Each triggerer's ``request_budget``, as the README's scaling section tells users to set it.

    The default shared evenly (a hard cap on every request a triggerer's waits send, the reads of
    the executions that change included). None for per_execution, whose budget is set too large to
    bind.
    """
    if mode != "coalesced":
        return None
    return DEFAULT_REQUEST_BUDGET / args.triggerers


def connection_extras(mode: str, args: argparse.Namespace) -> str:
    """The mode's connection options, one connection for all triggerers (as a deployment has)."""
    if mode != "coalesced" or args.triggerers == 1:
        return EXTRAS[mode]
    return f"{EXTRAS[mode]}&request_budget={request_budget(mode, args):g}"


# -- the helper process: writes deferred task instances as a worker's deferral does ------------


def write_deferred(run_prefix: str, conn_id: str, interval: float, ids_file: str) -> dict[str, Any]:
    """Create N / 100 runs of the DAG and defer each mapped task instance on its own execution."""
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.sdk.serde import serialize
    from airflow.utils import timezone
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import func, select, update

    from cerebelum_provider.operators._common import deferral_timeout
    from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger

    execution_ids = json.loads(Path(ids_file).read_text())
    started = time.monotonic()
    end_time = time.time() + TASK_TIMEOUT
    with create_session() as session:
        dag = SerializedDagModel.get_dag(DAG_ID, session=session)
        if dag is None:
            raise SystemExit(f"{DAG_ID} is not parsed yet")
        for run_number in range(len(execution_ids) // MAP_WIDTH):
            run_id = f"{run_prefix}_{run_number:04d}"
            now = timezone.utcnow()
            dag.create_dagrun(
                run_id=run_id,
                run_after=now,
                run_type=DagRunType.MANUAL,
                triggered_by=DagRunTriggeredByType.TEST,
                state=DagRunState.RUNNING,
                start_date=now,
                session=session,
            )
            instances = session.execute(
                select(TaskInstance.id, TaskInstance.map_index)
                .where(TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run_id)
                .order_by(TaskInstance.map_index)
            ).all()
            if len(instances) != MAP_WIDTH:
                raise SystemExit(f"run {run_id} has {len(instances)} task instances, expected {MAP_WIDTH}")
            rows = []
            for _, map_index in instances:
                # What the sensor's _check_then_defer builds, serialized as the task runner does.
                trigger = CerebelumExecutionTrigger(
                    execution_id=execution_ids[run_number * MAP_WIDTH + map_index],
                    cerebelum_conn_id=conn_id,
                    poll_interval=interval,
                    end_time=end_time,
                )
                classpath, kwargs = trigger.serialize()
                row = Trigger(classpath=classpath, kwargs={})
                # The Execution API stores the worker's serde-serialized kwargs as JSON text.
                row.encrypted_kwargs = json.dumps(serialize(kwargs))
                rows.append(row)
            session.add_all(rows)
            session.flush()
            trigger_timeout = timezone.utcnow() + deferral_timeout(end_time)
            session.execute(
                update(TaskInstance),
                [
                    {
                        "id": ti_id,
                        "state": TaskInstanceState.DEFERRED,
                        "try_number": 1,
                        "start_date": now,
                        "trigger_id": row.id,
                        "next_method": "execute_complete",
                        "next_kwargs": {},
                        "trigger_timeout": trigger_timeout,
                    }
                    for (ti_id, _), row in zip(instances, rows)
                ],
            )
            session.commit()
        deferred = session.scalar(
            select(func.count())
            .select_from(TaskInstance)
            .where(
                TaskInstance.dag_id == DAG_ID,
                TaskInstance.run_id.startswith(f"{run_prefix}_"),
                TaskInstance.state == TaskInstanceState.DEFERRED,
            )
        )
    return {"deferred": deferred, "seconds": round(time.monotonic() - started, 1)}


# -- the benchmark -----------------------------------------------------------------------------


def query(stack: Any, sql: str, *args: Any) -> list[tuple]:
    import psycopg2

    with psycopg2.connect(stack.postgres.dsn) as db, db.cursor() as cursor:
        cursor.execute(sql, args)
        return cursor.fetchall()


def triggerer_tree(stack: Any, name: str) -> list[Any]:
    import psutil

    root = psutil.Process(stack.processes[name].popen.pid)
    return [root, *root.children(recursive=True)]


def triggers_held(stack: Any) -> dict[str, int]:
    """Triggers each live triggerer holds, by the host name its job reports."""
    rows = query(
        stack,
        "SELECT job.hostname, count(*) FROM trigger JOIN job ON job.id = trigger.triggerer_id "
        "GROUP BY job.hostname ORDER BY job.hostname",
    )
    return {hostname: count for hostname, count in rows}


def cpu_seconds(processes: list[Any]) -> float:
    import psutil

    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):  # a child that exited took its time along
            times = process.cpu_times()
            total += times.user + times.system
    return total


def rss_bytes(processes: list[Any]) -> int:
    import psutil

    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total


def wait_until(condition: Any, timeout: float, what: str, interval: float = 1.0) -> float:
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise SystemExit(f"not within {timeout:.0f}s: {what}")
        time.sleep(interval)
    took = time.monotonic() - began
    print(f"  {what}: {took:.1f}s", flush=True)
    return took


def run_mode(
    mode: str, stack: Any, core: RemoteCore, ids: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    print(f"{mode}: {len(ids)} waits", flush=True)
    run_prefix = f"bench_{mode}"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as ids_file:
        json.dump(ids, ids_file)
    written = json.loads(
        subprocess.run(
            [PYTHON, __file__, "defer", run_prefix, f"cerebelum_{mode}", str(args.interval), ids_file.name],
            env=stack.env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    print(f"  {written['deferred']} task instances deferred in {written['seconds']} s", flush=True)
    names = stack.instance_names("triggerer")
    log_paths = {name: stack.logs_dir / f"{name}.log" for name in names}
    log_offsets = {name: path.stat().st_size if path.exists() else 0 for name, path in log_paths.items()}
    counts_at_start = sum(core.call_counts().values())
    refused_at_start = core.rate_limited_count()
    for name in names:
        stack.start_service(name)
    started = time.monotonic()
    assigned = wait_until(
        lambda: query(stack, "SELECT count(*) FROM trigger WHERE triggerer_id IS NOT NULL")[0][0] >= len(ids),
        600,
        "every trigger assigned",
    )
    time.sleep(args.settle)
    held = triggers_held(stack)
    trees = {name: triggerer_tree(stack, name) for name in names}
    cpu_start = sum(cpu_seconds(tree) for tree in trees.values())
    calls_start = core.call_counts()
    counts_start = sum(calls_start.values())
    refused_start = core.rate_limited_count()
    window_log_offsets = {name: path.stat().st_size for name, path in log_paths.items()}
    peak_rss = {name: rss_bytes(tree) for name, tree in trees.items()}
    order = list(ids)
    random.Random(7).shuffle(order)
    completed_at: dict[str, float] = {}
    spacing = 1.0 / args.completions_per_second
    window_start = time.monotonic()
    next_completion = window_start
    next_sample = window_start
    while time.monotonic() - window_start < args.duration:
        now = time.monotonic()
        if now >= next_completion and order:
            execution_id = order.pop()
            core.complete(execution_id)
            completed_at[execution_id] = time.time()
            next_completion += spacing
        if now >= next_sample:
            for name, tree in trees.items():
                peak_rss[name] = max(peak_rss[name], rss_bytes(tree))
            next_sample = now + 2.0
        time.sleep(0.02)
    window = time.monotonic() - window_start
    calls_end = core.call_counts()
    requests = sum(calls_end.values()) - counts_start
    pages = calls_end.get("ListExecutions", 0) - calls_start.get("ListExecutions", 0)
    reads = calls_end.get("GetExecutionStatus", 0) - calls_start.get("GetExecutionStatus", 0)
    refused = core.rate_limited_count() - refused_start
    cpu = sum(cpu_seconds(tree) for tree in trees.values()) - cpu_start
    blocked_window: list[float] = []
    blocked_startup: list[float] = []
    for name, path in log_paths.items():
        log_text = path.read_text(errors="replace")
        blocked_window += [float(x) for x in _BLOCKED.findall(log_text[window_log_offsets[name] :])]
        blocked_startup += [
            float(x) for x in _BLOCKED.findall(log_text[log_offsets[name] : window_log_offsets[name]])
        ]
    # The completions of the window's last seconds are given up to three intervals to be seen.
    index_of = {execution_id: number for number, execution_id in enumerate(ids)}
    wanted = {index_of[execution_id] for execution_id in completed_at}

    def left_deferred() -> dict[int, float]:
        """Execution index -> when its task instance left DEFERRED (epoch seconds)."""
        rows = query(
            stack,
            "SELECT run_id, map_index, extract(epoch FROM updated_at) FROM task_instance "
            "WHERE dag_id = %s AND run_id LIKE %s AND state <> 'deferred'",
            DAG_ID,
            f"{run_prefix}\\_%",
        )
        return {int(run.rsplit("_", 1)[1]) * MAP_WIDTH + index: float(at) for run, index, at in rows}

    deadline = time.monotonic() + 3 * args.interval * (1 + args.waits // 9000)
    seen = left_deferred()
    while not wanted <= set(seen) and time.monotonic() < deadline:
        time.sleep(1.0)
        seen = left_deferred()
    latencies = [seen[index_of[eid]] - at for eid, at in completed_at.items() if index_of[eid] in seen]
    stray = sorted(set(seen) - wanted)  # left DEFERRED though its execution never completed
    for name in names:
        stack.processes.pop(name).stop()
    # Nothing of this mode is left for the next triggerer to pick up.
    query_write(
        stack,
        "UPDATE task_instance SET state = 'success', trigger_id = NULL WHERE run_id LIKE %s",
        f"{run_prefix}\\_%",
    )
    query_write(stack, "DELETE FROM trigger")
    return {
        "mode": mode,
        "waits": len(ids),
        "triggerers": args.triggerers,
        "held": held,
        "request_budget": request_budget(mode, args),
        "assigned_s": round(assigned, 1),
        "startup_s": round(window_start - started, 1),
        "startup_requests": counts_start - counts_at_start,
        "startup_429": refused_start - refused_at_start,
        "window_s": round(window, 1),
        "requests_per_min": round(requests * 60 / window),
        "list_pages_per_min": round(pages * 60 / window),
        "status_reads_per_min": round(reads * 60 / window),
        "refused_429_per_min": round(refused * 60 / window),
        "completed": len(completed_at),
        "left_deferred": len(latencies),
        "stray": len(stray),
        "p50_s": round(percentile(latencies, 0.5), 1) if latencies else None,
        "p99_s": round(percentile(latencies, 0.99), 1) if latencies else None,
        "cpu_s": round(cpu, 1),
        "cpu_share": round(cpu / window, 2),
        "rss_mb": round(max(peak_rss.values()) / 2**20),
        "rss_mb_each": {name: round(rss / 2**20) for name, rss in peak_rss.items()},
        "worst_blocked_s": max(blocked_window, default=0.0),
        "blocked_lines": len(blocked_window),
        "worst_blocked_startup_s": max(blocked_startup, default=0.0),
    }


def query_write(stack: Any, sql: str, *args: Any) -> None:
    import psycopg2

    with psycopg2.connect(stack.postgres.dsn) as db, db.cursor() as cursor:
        cursor.execute(sql, args)


def _column(key: str) -> Any:
    return lambda result: result[key]


#: RESULTS.md's table for one triggerer: (heading, cell of a mode's result).
COLUMNS: list[tuple[str, Any]] = [
    ("mode", _column("mode")),
    ("waits", _column("waits")),
    ("start-up (s)", _column("startup_s")),
    ("requests/min", _column("requests_per_min")),
    ("429/min", _column("refused_429_per_min")),
    ("completed", _column("completed")),
    ("left DEFERRED", _column("left_deferred")),
    ("p50 (s)", _column("p50_s")),
    ("p99 (s)", _column("p99_s")),
    ("triggerer CPU (s)", _column("cpu_s")),
    ("CPU share", _column("cpu_share")),
    ("peak RSS (MB)", _column("rss_mb")),
    ("worst blocked (s)", _column("worst_blocked_s")),
]
#: With several triggerers: each one's triggers and budget, where the requests went, CPU summed over
#: all of them, the largest one's memory, the worst block in any one's log.
SPLIT_COLUMNS: list[tuple[str, Any]] = [
    ("mode", _column("mode")),
    ("waits", _column("waits")),
    ("triggers held", lambda result: " / ".join(str(count) for count in result["held"].values())),
    ("request_budget each", lambda result: result["request_budget"] or "-"),
    ("start-up (s)", _column("startup_s")),
    ("requests/min", _column("requests_per_min")),
    ("list pages/min", _column("list_pages_per_min")),
    ("status reads/min", _column("status_reads_per_min")),
    ("429/min", _column("refused_429_per_min")),
    ("completed", _column("completed")),
    ("left DEFERRED", _column("left_deferred")),
    ("p50 (s)", _column("p50_s")),
    ("p99 (s)", _column("p99_s")),
    ("CPU, all triggerers (s)", _column("cpu_s")),
    ("CPU share", _column("cpu_share")),
    ("peak RSS, largest triggerer (MB)", _column("rss_mb")),
    ("worst blocked (s)", _column("worst_blocked_s")),
]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["defer"]:
        run_prefix, conn_id, interval, ids_file = argv[1:5]
        print(json.dumps(write_deferred(run_prefix, conn_id, float(interval), ids_file)))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--waits", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds after every trigger is assigned")
    parser.add_argument("--duration", type=float, default=120.0, help="measured window, seconds")
    parser.add_argument("--completions-per-second", type=float, default=2.0)
    parser.add_argument("--rate-limit", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.005)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--select-per-loop", type=int, default=500, help="[triggerer] max_trigger_to_select_per_loop"
    )
    parser.add_argument(
        "--triggerers",
        type=int,
        default=1,
        help="triggerer processes sharing the waits, each with its share of the request budget",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.waits <= 0 or args.waits % MAP_WIDTH:
        parser.error(
            f"--waits must be a positive multiple of {MAP_WIDTH} (the DAG's map width), got {args.waits}"
        )
    if args.triggerers < 1:
        parser.error(f"--triggerers must be a whole number >= 1, got {args.triggerers}")
    if args.triggerers > 1 and 60 * args.completions_per_second >= DEFAULT_REQUEST_BUDGET:
        parser.error(
            f"--completions-per-second {args.completions_per_second} leaves the triggerers no request "
            f"budget: their reads alone ask for {DEFAULT_REQUEST_BUDGET:.0f} a minute or more"
        )
    # A SIGTERM stops the stack and the emulators as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    sys.path.insert(0, str(ROOT / "scripts"))
    from airflow_stack import AirflowStack

    facts = machine()
    modes = args.modes.split(",")
    results = []
    cores = {mode: RemoteCore.start(latency=args.latency) for mode in modes}
    try:
        ids = {}
        for mode, core in cores.items():
            core.set_rate_limit(args.rate_limit)
            ids[mode] = core.seed(WORKFLOW, args.waits)
        connections = {
            f"cerebelum_{mode}": (
                f"cerebelum://127.0.0.1:{core.rest_url().rsplit(':', 1)[1]}?{connection_extras(mode, args)}"
            )
            for mode, core in cores.items()
        }
        with tempfile.TemporaryDirectory(prefix="bench-triggerer-scale-") as work:
            stack = AirflowStack(
                home=Path(work) / "airflow",
                dags_folder=DAGS,
                connections=connections,
                extra_env={
                    "CEREBELUM_BENCH_INTERVAL": str(args.interval),
                    "AIRFLOW__TRIGGERER__CAPACITY": str(args.waits + 100),
                    # Airflow's default (50 a loop) takes 200 loops to pick up 10,000 triggers.
                    "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": str(args.select_per_loop),
                },
                database="postgresql",
                services=("dag-processor", "triggerer"),
                startup_timeout=300,
                triggerers=args.triggerers,
            )
            with stack:
                stack.wait_for_dags([DAG_ID], timeout=300)
                # Parsed once; from here on only the triggerers (and the api-server) run.
                stack.processes.pop("dag-processor").stop()
                for name in stack.instance_names("triggerer"):
                    stack.processes.pop(name).stop()
                for mode in modes:
                    result = run_mode(mode, stack, cores[mode], ids[mode], args)
                    print(json.dumps(result), flush=True)
                    results.append(result)
    finally:
        for core in cores.values():
            core.close()
    if args.no_write:
        return
    command = "python bench/bench_triggerer_scale.py " + " ".join(argv)
    started = f"Command: `{command}` ({facts['date']}, load average at start {facts['load_average']})."
    if args.triggerers == 1:
        columns = COLUMNS
        name = "triggerer_scale"
        title = f"### {args.waits} deferred sensors in a real `airflow triggerer` against Core's rate limit"
    else:
        columns = SPLIT_COLUMNS
        name = "triggerer_scale_split"
        title = (
            f"### {args.waits} deferred sensors over {args.triggerers} `airflow triggerer` processes "
            "against Core's rate limit"
        )
    rows = [[cell(r) for _, cell in columns] for r in results]
    write_section(name, f"{title}\n\n{started}\n\n" + table([head for head, _ in columns], rows))


if __name__ == "__main__":
    main()
