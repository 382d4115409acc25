"""The real Core's costs: status and list latency as executions grow, Core's CPU per call, its REST
rate limit, and bulk resume of real executions over HTTP.

Runs the real release (``scripts/real_core.py``, ``RealCore``: Core, its PostgreSQL, the fake
Thalamus, the SDK worker). Core always takes port 4021 and only one runs per machine, so this
waits (up to ``--wait-port`` seconds) while another Core holds it.

Executions are made three ways, each said in the table that uses it:

- real ones: started over gRPC (``ExecuteWorkflow``; the REST budget stays for the measurements)
  and run by the SDK worker;
- clones: the event rows of one real execution copied under new ids with SQL (``INSERT ... SELECT``
  into Core's ``events`` table, the ``execution_id`` inside each event rewritten too), which Core
  then replays like any other: thousands in a second, identical in shape to the real one;
- long ones: a real execution's start event, then K-2 copies of its first ``StepExecutedEvent``,
  then its completion event, so a status query replays K events.

Core's cost is CPU time read from /proc (psutil) before and after a batch of calls: the BEAM
(``core.pid``), PostgreSQL (postmaster, its live backends and the ones that ended), and the fake
Thalamus, which Core asks for its keys on every authenticated REST request.

Core's REST API admits 1,000 requests per calendar minute per organisation (its RateLimiter plug;
the fake Thalamus's token has none, so every call here shares the "anonymous" budget). The
measurements keep under it (``RestBudget`` waits for the next minute); the rate-limit sections
go over it on purpose, each from the start of a fresh minute.

    .venv/bin/python bench/bench_real_core.py              # ~10 min on 2 cores
    .venv/bin/python bench/bench_real_core.py --quick      # smaller sizes, no rate-limit runs
    .venv/bin/python bench/bench_real_core.py --page-vs-reads   # a list page against 100 reads, printed
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from _support import machine, median, percentile, table, write_section
from real_core import METRICS_PORT, RealCore, port_in_use

RATE_LIMIT = 1000
#: Requests we allow ourselves per minute outside the rate-limit sections (Core's limit is 1,000).
REST_BUDGET = 900


# -- Core's processes and their CPU ----------------------------------------------------------


def _cpu(process: psutil.Process, *, with_children: bool = False) -> float:
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    total = times.user + times.system
    if with_children:
        # backends that ended were reaped by the postmaster: their time is in its children_* fields
        total += times.children_user + times.children_system
        for child in process.children(recursive=True):
            try:
                child_times = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += child_times.user + child_times.system
    return total


class CoreCPU:
    """CPU seconds used so far by Core (BEAM), its PostgreSQL and the fake Thalamus."""

    def __init__(self, core: RealCore) -> None:
        assert core.state_dir is not None
        self.beam = psutil.Process(int((core.state_dir / "core.pid").read_text().split()[0]))
        postmaster = (core.state_dir / "pgdata" / "postmaster.pid").read_text().split()[0]
        self.postgres = psutil.Process(int(postmaster))
        self.thalamus = psutil.Process(core._thalamus.pid)

    def sample(self) -> dict[str, float]:
        return {
            "core": _cpu(self.beam, with_children=True),
            "postgres": _cpu(self.postgres, with_children=True),
            "thalamus": _cpu(self.thalamus),
        }

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: after[name] - before[name] for name in before}


class RestBudget:
    """Counts our REST requests per calendar minute (Core's window) and waits for a fresh minute
    before a batch that would take the count past ``REST_BUDGET``."""

    def __init__(self) -> None:
        self.minute = -1
        self.used = 0

    def reserve(self, requests: int) -> None:
        now = time.time()
        minute = int(now // 60)
        if minute != self.minute:
            self.minute, self.used = minute, 0
        if self.used + requests > REST_BUDGET:
            fresh_minute()
            self.minute, self.used = int(time.time() // 60), 0
        self.used += requests

    def spent_all(self) -> None:
        """A rate-limit section used up the current minute: the next batch waits for a fresh one."""
        self.minute, self.used = int(time.time() // 60), REST_BUDGET


def fresh_minute(margin: float = 0.5) -> None:
    """Sleep until ``margin`` seconds into the next calendar minute (Core's rate-limit window)."""
    time.sleep(60 - time.time() % 60 + margin)


# -- making executions -----------------------------------------------------------------------


class Database:
    """psql against Core's private PostgreSQL."""

    def __init__(self, core: RealCore) -> None:
        assert core.state_dir is not None
        self.port = (core.state_dir / "pgport").read_text().strip()

    def run(self, sql: str) -> str:
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
            script.write(sql)
        try:
            done = subprocess.run(  # noqa: PLW1510 (the exit code is checked below, with psql's stderr)
                ["psql", "-h", "127.0.0.1", "-p", self.port, "-U", "postgres", "-d", "cerebelum",
                 "-v", "ON_ERROR_STOP=1", "-tA", "-f", script.name],
                capture_output=True, text=True, timeout=600,
            )
        finally:
            os.unlink(script.name)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr[-2000:]}")
        return done.stdout.strip()

    def clone(self, source: str, count: int, workflow: str | None = None) -> list[str]:
        """``count`` copies of execution ``source`` (every event row) under new ids; their ids.

        With ``workflow``, the copies' start events name that workflow instead (Core's list filter
        and a resumed engine read it from there).
        """
        ids = [str(uuid.uuid4()) for _ in range(count)]
        array = "ARRAY[" + ",".join(f"'{new_id}'" for new_id in ids) + "]"
        data = "jsonb_set(e.event_data, '{execution_id}', to_jsonb(ids.new_id))"
        if workflow is not None:
            data = (
                f"CASE WHEN e.event_type = 'ExecutionStartedEvent' "
                f"THEN jsonb_set({data}, '{{blueprint_name}}', to_jsonb('{workflow}'::text)) ELSE {data} END"
            )
        self.run(
            f"INSERT INTO events (execution_id, event_type, event_data, version, organization_id) "
            f"SELECT ids.new_id, e.event_type, {data}, e.version, e.organization_id "
            f"FROM unnest({array}) AS ids(new_id), events e WHERE e.execution_id = '{source}';"
        )
        return ids

    def long_execution(self, source: str, events: int) -> str:
        """A completed execution of ``events`` events: start, events-2 step events, completion."""
        new_id = str(uuid.uuid4())
        rewrite = (
            "jsonb_set(jsonb_set(e.event_data, '{{execution_id}}', to_jsonb('{id}'::text)), "
            "'{{version}}', to_jsonb({version}))"
        )
        insert = "INSERT INTO events (execution_id, event_type, event_data, version, organization_id) "
        self.run(
            insert + f"SELECT '{new_id}', e.event_type, {rewrite.format(id=new_id, version='0')}, 0, "
            f"e.organization_id FROM events e WHERE e.execution_id = '{source}' AND e.version = 0;\n"
            + insert + f"SELECT '{new_id}', e.event_type, {rewrite.format(id=new_id, version='g')}, g, "
            f"e.organization_id FROM events e, generate_series(1, {events - 2}) g "
            f"WHERE e.execution_id = '{source}' AND e.version = 1;\n"
            + insert + f"SELECT '{new_id}', e.event_type, {rewrite.format(id=new_id, version=events - 1)}, "
            f"{events - 1}, e.organization_id FROM events e WHERE e.execution_id = '{source}' "
            f"AND e.event_type = 'ExecutionCompletedEvent';"
        )
        return new_id

    def running_clones(self, source: str, count: int) -> list[str]:
        """``count`` executions that stay RUNNING: the start event and first step event of ``source``."""
        ids = [str(uuid.uuid4()) for _ in range(count)]
        array = "ARRAY[" + ",".join(f"'{new_id}'" for new_id in ids) + "]"
        self.run(
            f"INSERT INTO events (execution_id, event_type, event_data, version, organization_id) "
            f"SELECT ids.new_id, e.event_type, "
            f"jsonb_set(e.event_data, '{{execution_id}}', to_jsonb(ids.new_id)), e.version, "
            f"e.organization_id FROM unnest({array}) AS ids(new_id), events e "
            f"WHERE e.execution_id = '{source}' AND e.version <= 1;"
        )
        return ids

    def count_with_event(self, event_type: str, ids: list[str]) -> int:
        array = "ARRAY[" + ",".join(f"'{value}'" for value in ids) + "]"
        return int(
            self.run(
                f"SELECT count(DISTINCT execution_id) FROM events WHERE event_type = '{event_type}' "
                f"AND execution_id = ANY({array});"
            )
        )


def start_over_grpc(
    core: RealCore, workflow: str, count: int, failures: Counter[str] | None = None
) -> list[str]:
    """Start ``count`` executions of ``workflow`` with gRPC ExecuteWorkflow (outside the REST budget).

    Returns the ids Core gave. A call that fails (this release sometimes lets ExecuteWorkflow run
    past a 60 s deadline) is counted in ``failures`` by status code and not sent again: it is not
    idempotent, and Core may have started the execution anyway.
    """
    import grpc

    from cerebelum_provider.proto import worker_service_pb2 as pb
    from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

    ids = []
    with grpc.insecure_channel(core.grpc_target) as channel:
        stub = pb_grpc.WorkerServiceStub(channel)
        for first in range(0, count, 20):
            futures = [
                stub.ExecuteWorkflow.future(pb.ExecuteRequest(workflow_module=workflow), timeout=60)
                for _ in range(min(20, count - first))
            ]
            for future in futures:
                try:
                    handle = future.result()
                except grpc.RpcError as error:
                    if failures is None:
                        raise
                    failures[error.code().name] += 1
                    continue
                if handle.status != "running":
                    raise RuntimeError(f"ExecuteWorkflow of {workflow!r} answered {handle.status!r}")
                ids.append(handle.execution_id)
    return ids


# -- measuring -------------------------------------------------------------------------------


def timed_calls(
    http: httpx.Client, path: str, calls: int, params: dict[str, Any] | None = None
) -> list[float]:
    """``calls`` sequential GETs of ``path``; their latencies (s). Raises on an answer that is not 200."""
    latencies = []
    for _ in range(calls):
        began = time.perf_counter()
        answer = http.get(path, params=params)
        latencies.append(time.perf_counter() - began)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path} {params}: {answer.status_code} {answer.text[:300]}")
    return latencies


def cost_row(cpu: CoreCPU, calls: int, run) -> tuple[Any, dict[str, float]]:
    """Run ``run()``, return its value and Core's CPU per call (ms) split by process."""
    before = cpu.sample()
    value = run()
    spent = CoreCPU.spent(before, cpu.sample())
    return value, {name: seconds / calls * 1000 for name, seconds in spent.items()}


def grpc_probe(core: RealCore, execution_id: str) -> dict[str, str]:
    """One gRPC status query and one ListExecutions page: what each answers on this release."""
    import grpc

    from cerebelum_provider.proto import worker_service_pb2 as pb
    from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

    outcomes = {}
    with grpc.insecure_channel(core.grpc_target) as channel:
        stub = pb_grpc.WorkerServiceStub(channel)
        calls = {
            "GetExecutionStatus (existing execution)": lambda: stub.GetExecutionStatus(
                pb.GetExecutionStatusRequest(execution_id=execution_id), timeout=30
            ),
            "ListExecutions (a non-empty page)": lambda: stub.ListExecutions(
                pb.ListExecutionsRequest(limit=10), timeout=30
            ),
        }
        for name, call in calls.items():
            began = time.perf_counter()
            try:
                call()
                outcome = "OK"
            except grpc.RpcError as error:
                outcome = f"{error.code().name} {error.details()!r}"
            outcomes[name] = f"{outcome} after {(time.perf_counter() - began) * 1000:.0f} ms"
    return outcomes


def status_by_events(core: RealCore, db: Database, cpu: CoreCPU, budget: RestBudget, source: str,
                     sizes: list[int], calls: int) -> list[dict[str, Any]]:
    rows = []
    for events in sizes:
        execution_id = db.long_execution(source, events)
        budget.reserve(calls + 1)
        core.http.get(f"/api/v1/executions/{execution_id}")  # first replay, not measured
        latencies, per_call = cost_row(
            cpu, calls, lambda path=f"/api/v1/executions/{execution_id}": timed_calls(core.http, path, calls)
        )
        rows.append({"events": events, "calls": calls, "median_ms": median(latencies) * 1000,
                     "p95_ms": percentile(latencies, 0.95) * 1000, "cpu_ms": per_call})
        print(f"  status, {events} events: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def list_by_executions(core: RealCore, db: Database, cpu: CoreCPU, budget: RestBudget, source: str,
                       workflow: str, sizes: list[int], status_calls: int) -> list[dict[str, Any]]:
    """Grow the clones of ``source`` to each size; time a first page, a whole listing, a status."""
    rows = []
    ids: list[str] = []
    for size in sizes:
        ids += db.clone(source, size - len(ids))
        params = {"workflow": workflow, "status": "failed", "limit": 100, "offset": 0}
        budget.reserve(1 + 3)
        total = core.http.get("/api/v1/executions", params=params).json()["total"]
        first_page, first_cpu = cost_row(
            cpu, 3, lambda params=params: timed_calls(core.http, "/api/v1/executions", 3, params)
        )
        pages = -(-total // 100)
        budget.reserve(pages)

        def whole_listing(pages: int = pages, params: dict[str, Any] = params) -> float:
            began = time.perf_counter()
            for page in range(pages):
                timed_calls(core.http, "/api/v1/executions", 1, {**params, "offset": page * 100})
            return time.perf_counter() - began

        listing_seconds, listing_cpu = cost_row(cpu, pages, whole_listing)
        budget.reserve(status_calls)
        sample = ids[len(ids) // 2]
        status_latencies, status_cpu = cost_row(
            cpu, status_calls,
            lambda path=f"/api/v1/executions/{sample}": timed_calls(core.http, path, status_calls),
        )
        rows.append({
            "executions": size, "total_listed": total, "first_page_ms": median(first_page) * 1000,
            "first_page_cpu_ms": first_cpu, "pages": pages, "listing_s": listing_seconds,
            "listing_cpu_ms_per_page": listing_cpu, "status_ms": median(status_latencies) * 1000,
            "status_cpu_ms": status_cpu,
        })
        print(f"  list, {size} executions: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def list_page_vs_reads(core: RealCore, db: Database, cpu: CoreCPU, budget: RestBudget, source: str,
                       workflow: str, sizes: list[int]) -> list[dict[str, Any]]:
    """Where a list page stops paying: grow RUNNING clones of ``source`` to each size, then time the
    shared poller's listing (one page of 100: ``workflow``, ``status=running``) against the 100
    status reads it stands for, in wall time and Core CPU."""
    rows = []
    ids: list[str] = []
    for size in sizes:
        ids += db.running_clones(source, size - len(ids))
        params = {"workflow": workflow, "status": "running", "limit": 100, "offset": 0}
        budget.reserve(3)
        page, page_cpu = cost_row(
            cpu, 3, lambda params=params: timed_calls(core.http, "/api/v1/executions", 3, params)
        )
        budget.reserve(100)
        sample = ids[-100:]

        def reads(sample: list[str] = sample) -> float:
            return sum(timed_calls(core.http, f"/api/v1/executions/{one}", 1)[0] for one in sample)

        reads_seconds, read_cpu = cost_row(cpu, 100, reads)
        page_cpu_ms, reads_cpu_ms = sum(page_cpu.values()), 100 * sum(read_cpu.values())
        rows.append({
            "running": size, "page_ms": median(page) * 1000, "page_cpu_ms": page_cpu_ms,
            "reads_ms": reads_seconds * 1000, "reads_cpu_ms": reads_cpu_ms,
            "wall_ratio": median(page) / reads_seconds,
            "cpu_ratio": page_cpu_ms / reads_cpu_ms if reads_cpu_ms else float("nan"),
        })
        print(f"  page vs reads, {size} running: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def status_during_listing(core: RealCore, budget: RestBudget, execution_id: str, workflow: str,
                          status_calls: int) -> dict[str, Any]:
    """Status latency alone, then while another connection pages through a whole listing.

    Core's EventStore is one process (a GenServer) that answers every read in turn, so a status
    query waits behind a list page being computed.
    """
    import threading

    path = f"/api/v1/executions/{execution_id}"
    params = {"workflow": workflow, "status": "failed", "limit": 100, "offset": 0}
    budget.reserve(status_calls + 1)
    total = core.http.get("/api/v1/executions", params=params).json()["total"]
    pages = -(-total // 100)
    alone = timed_calls(core.http, path, status_calls)
    budget.reserve(pages + status_calls)
    done = threading.Event()

    def list_everything() -> None:
        with httpx.Client(base_url=core.http_url, headers=core.auth_headers, timeout=120) as other:
            for page in range(pages):
                timed_calls(other, "/api/v1/executions", 1, {**params, "offset": page * 100})
        done.set()

    lister = threading.Thread(target=list_everything)
    lister.start()
    time.sleep(0.2)
    during = []
    while not done.is_set() and len(during) < status_calls:
        during += timed_calls(core.http, path, 1)
    lister.join()
    if not during:
        raise RuntimeError(f"the listing of {pages} pages ended before a status query could overlap it")
    return {"pages": pages, "alone_ms": median(alone) * 1000, "during_ms": median(during) * 1000,
            "during_worst_ms": max(during) * 1000, "during_calls": len(during)}


def client_status(core: RealCore, execution_id: str) -> str:
    """Our client over REST on a synthetic long execution: it must parse what Core answers."""
    from cerebelum_provider.client import ExecutionClient

    async def ask() -> str:
        async with ExecutionClient(core.http_url, token=core.token, timeout=30) as client:
            status = await client.get_execution_status(execution_id)
            return status.status.name

    try:
        return asyncio.run(ask())
    except Exception as error:  # noqa: BLE001 (reported in the results, not raised)
        return f"{type(error).__name__}: {error}"


# -- the rate limit --------------------------------------------------------------------------


def burst(core: RealCore, execution_id: str, requests: int) -> dict[str, Any]:
    """From the start of a fresh minute, ``requests`` sequential status GETs: what Core answers."""
    fresh_minute()
    codes: Counter[int] = Counter()
    first_429 = None
    retry_after = None
    began = time.perf_counter()
    for number in range(1, requests + 1):
        answer = core.http.get(f"/api/v1/executions/{execution_id}")
        codes[answer.status_code] += 1
        if answer.status_code == 429 and first_429 is None:
            first_429, retry_after = number, answer.headers.get("retry-after")
            body = answer.text
    return {"requests": requests, "codes": dict(codes), "first_429_at_request": first_429,
            "retry_after": retry_after, "body_429": body if first_429 else None,
            "seconds": time.perf_counter() - began, "minute_second_at_end": time.time() % 60}


def _core_answers_since(core: RealCore, offset: int) -> Counter[str]:
    """Phoenix's "Sent NNN" lines in Core's log after ``offset`` characters, by status code."""
    return Counter(re.findall(r"\[info\] Sent (\d{3}) in", core.core_log()[offset:]))


def fleet_at_limit(core: RealCore, ids: list[str], interval: float, seconds: float) -> dict[str, Any]:
    """``len(ids)`` CerebelumExecutionTriggers over REST, polling every ``interval`` s past the limit."""
    os.environ["AIRFLOW_CONN_CEREBELUM_DEFAULT"] = core.airflow_connection_uri("http")
    from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger

    async def run() -> dict[str, Any]:
        events: list[Any] = []

        async def watch(execution_id: str) -> None:
            trigger = CerebelumExecutionTrigger(execution_id=execution_id, poll_interval=interval)
            async for event in trigger.run():
                events.append(event.payload)

        log_offset = len(core.core_log())
        fresh_minute()
        began = time.time()
        tasks = [asyncio.create_task(watch(execution_id)) for execution_id in ids]
        samples = []
        while time.time() - began < seconds:
            await asyncio.sleep(5)
            answers = _core_answers_since(core, log_offset)
            samples.append((round(time.time() - began), answers.get("200", 0), answers.get("429", 0)))
        alive = sum(not task.done() for task in tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        answers = _core_answers_since(core, log_offset)
        return {"triggers": len(ids), "interval": interval, "seconds": seconds, "answers": dict(answers),
                "alive": alive, "events": [
                    f"{event.get('status')}/{event.get('error_type')}" for event in events
                ], "samples": samples}

    return asyncio.run(run())


def bulk_resume(
    core: RealCore, cpu: CoreCPU, workflow: str, concurrency: int, expected: int
) -> dict[str, Any]:
    """``resume_matching`` over REST on every FAILED execution of ``workflow``, from a fresh minute.

    A run that raises (a list page refused after every retry ends it) is recorded with its error
    and the progress it had reported.
    """
    from cerebelum_provider.bulk import resume_matching
    from cerebelum_provider.client import ExecutionClient

    progress: dict[str, int] = {}

    async def run() -> Any:
        async with ExecutionClient(core.http_url, token=core.token, timeout=30) as client:
            return await resume_matching(
                client, workflow_name=workflow, max_concurrency=concurrency, on_progress=progress.update
            )

    log_offset = len(core.core_log())
    fresh_minute()
    before, began = cpu.sample(), time.perf_counter()
    summary, raised = None, None
    try:
        summary = asyncio.run(run())
    except Exception as error:  # noqa: BLE001 (recorded: what a run at the limit does is the result)
        raised = f"{type(error).__name__}: {error}"
    wall = time.perf_counter() - began
    spent = CoreCPU.spent(before, cpu.sample())
    answers = _core_answers_since(core, log_offset)
    errors: Counter[str] = Counter()
    if summary is not None:
        errors.update(re.sub(r"[0-9a-f-]{36}", "<id>", message)[:140] for message in summary.errors.values())
    return {"workflow": workflow, "expected": expected, "concurrency": concurrency, "wall_s": wall,
            "counts": summary.counts() if summary is not None else progress, "raised": raised,
            "answers": dict(answers), "requests": sum(answers.values()),
            "core_cpu_s": spent, "errors": dict(errors.most_common(3))}


# -- the run ---------------------------------------------------------------------------------


RESULTS_JSON = Path(tempfile.gettempdir(), "bench_real_core.json")


def save(results: dict[str, Any]) -> None:
    """Every phase's figures so far, so that a run that fails late still leaves them."""
    RESULTS_JSON.write_text(json.dumps(results, indent=1, default=str))


def wait_for_port(limit: float) -> float:
    """Wait while another Core holds port 4021; return the seconds waited."""
    began = time.monotonic()
    while port_in_use(METRICS_PORT):
        if time.monotonic() - began > limit:
            raise SystemExit(f"port {METRICS_PORT} still taken after {limit:.0f} s: another real Core runs")
        print(f"port {METRICS_PORT} taken (another real Core); waiting", file=sys.stderr, flush=True)
        time.sleep(15)
    return time.monotonic() - began


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--wait-port", type=float, default=900.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--skip-rate-limit", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="write the section from the saved figures")
    parser.add_argument(
        "--page-vs-reads", action="store_true",
        help="only: one list page of 100 against 100 status reads as RUNNING executions grow (printed)",
    )
    parser.add_argument(
        "--page-vs-reads-sizes", default="100,500,1000,2000,3000,5000",
        help="RUNNING executions stored at each step of --page-vs-reads (comma-separated)",
    )
    parser.add_argument(
        "--from-bulk", action="store_true",
        help="a fresh Core for the rate-limit and bulk phases only, added to the saved first part",
    )
    args = parser.parse_args()
    event_sizes = [10, 100, 1000] if args.quick else [10, 1000, 10000]
    execution_sizes = [100, 500] if args.quick else [100, 1000, 2000, 5000]
    bulk_size = 100 if args.quick else 1000
    # small enough that its requests (list passes, a resume and a read-back each) fit one minute's limit
    small_bulk = 50 if args.quick else 300
    if args.report_only:
        results = json.loads(RESULTS_JSON.read_text())
        report(args, results["facts"], results)
        return
    waited = wait_for_port(args.wait_port)
    facts = machine()
    results: dict[str, Any] = {"waited_for_port_s": waited}
    if args.from_bulk:
        results = {**json.loads(RESULTS_JSON.read_text()), "bulk_run_facts": facts}
        facts = results["facts_first_part"]
    else:
        results["facts_first_part"] = facts
    budget = RestBudget()
    with RealCore() as core:
        core.add_blueprint("rc_fail_bulk", ("ok_a", "boom"))
        core.add_blueprint("rc_fail_small", ("ok_a", "boom"))
        cpu, db = CoreCPU(core), Database(core)
        budget.reserve(20)
        ok_source = core.start_execution("rc_ok", {"n": 1})
        core.wait_for_state(ok_source, {"completed"})
        core.wait_for_event(ok_source, "ExecutionCompletedEvent")
        if args.page_vs_reads:
            sizes = [int(size) for size in args.page_vs_reads_sizes.split(",")]
            rows = list_page_vs_reads(core, db, cpu, budget, ok_source, "rc_ok", sizes)
            header = ["RUNNING executions stored", "list page of 100 (ms)", "its Core CPU (ms)",
                      "100 status reads (ms)", "their Core CPU (ms)", "page / 100 reads, wall",
                      "page / 100 reads, Core CPU"]
            cells = [
                [r["running"], f"{r['page_ms']:.0f}", f"{r['page_cpu_ms']:.0f}", f"{r['reads_ms']:.0f}",
                 f"{r['reads_cpu_ms']:.0f}", f"{r['wall_ratio']:.2f}", f"{r['cpu_ratio']:.2f}"]
                for r in rows
            ]
            print(table(header, cells))
            print(f"{facts}")
            return
        fail_source = core.start_execution("rc_fail", {"n": 1})
        core.wait_for_state(fail_source, {"failed"})
        core.wait_for_event(fail_source, "ExecutionFailedEvent")
        if not args.from_bulk:
            first_part(args, core, cpu, db, budget, results, ok_source, fail_source, event_sizes,
                       execution_sizes)
        bulk_part(args, core, cpu, db, budget, results, ok_source, fail_source, bulk_size, small_bulk)
    results["facts"] = facts
    save(results)
    report(args, facts, results)


def first_part(args: argparse.Namespace, core: RealCore, cpu: CoreCPU, db: Database, budget: RestBudget,
               results: dict[str, Any], ok_source: str, fail_source: str,
               event_sizes: list[int], execution_sizes: list[int]) -> None:
    """gRPC's answers, list and status costs, reads waiting for each other."""
    results["grpc"] = grpc_probe(core, ok_source)
    print(f"gRPC: {results['grpc']}", file=sys.stderr, flush=True)

    # Lists first: every list call reads every event stored, so the long executions made for
    # the status table would weigh on every page measured after them.
    print("list latency by executions ...", file=sys.stderr, flush=True)
    results["list"] = list_by_executions(core, db, cpu, budget, fail_source, "rc_fail", execution_sizes,
                                         status_calls=10)
    print("status latency while a whole listing runs ...", file=sys.stderr, flush=True)
    results["contention"] = status_during_listing(core, budget, ok_source, "rc_fail", status_calls=20)

    print("status latency by events ...", file=sys.stderr, flush=True)
    results["status"] = status_by_events(core, db, cpu, budget, ok_source, event_sizes,
                                         calls=5 if args.quick else 10)
    long_id = db.long_execution(ok_source, event_sizes[1])
    budget.reserve(2)
    results["client_on_long"] = client_status(core, long_id)
    budget.reserve(3)
    params = {"workflow": "rc_fail", "status": "failed", "limit": 100, "offset": 0}
    results["list_after_long"] = median(timed_calls(core.http, "/api/v1/executions", 3, params)) * 1000
    save(results)


def bulk_part(args: argparse.Namespace, core: RealCore, cpu: CoreCPU, db: Database, budget: RestBudget,
              results: dict[str, Any], ok_source: str, fail_source: str, bulk_size: int,
              small_bulk: int) -> None:
    """The rate limit (raw, and our triggers at it) and bulk resume of real executions over REST."""
    # Copies of a real failed execution, each set under its own workflow: Core has no engine
    # process for them (as for executions that failed before a restart), so a resume answers
    # "resumed", starts one and records another failure. Executions started over gRPC and run
    # by the worker were tried first: this release stalled (ExecuteWorkflow past its 60 s
    # deadline, no more steps sent) after 200 to 1,000 of them in three of four runs.
    sets = {"rc_bulk_small_16": small_bulk, "rc_bulk_small_4": small_bulk, "rc_bulk_16": bulk_size}
    for workflow, size in sets.items():
        core.add_blueprint(workflow, ("ok_a", "boom"))
        db.clone(fail_source, size, workflow)
    results["bulk_seed"] = {"copies of a real failed execution": sets}
    save(results)
    if not args.skip_rate_limit and not args.quick:
        print("rate limit: a burst of 1,100 ...", file=sys.stderr, flush=True)
        results["burst"] = burst(core, ok_source, 1100)
        budget.spent_all()
        print(f"  {results['burst']}", file=sys.stderr, flush=True)
        running = db.running_clones(ok_source, 30)
        print("rate limit: 30 triggers polling every 1 s for 100 s ...", file=sys.stderr, flush=True)
        results["fleet_at_limit"] = fleet_at_limit(core, running, 1.0, 100.0)
        budget.spent_all()
        print(f"  {results['fleet_at_limit']}", file=sys.stderr, flush=True)
        save(results)
    results["bulk"] = []
    # the client waits out Core's rate-limit windows by itself (a 429 after its retries)
    runs = [("rc_bulk_small_16", 16, small_bulk), ("rc_bulk_small_4", 4, small_bulk),
            ("rc_bulk_16", 16, bulk_size)]
    for workflow, concurrency, size in runs:
        print(f"bulk resume of {size} over REST, max_concurrency={concurrency} ...",
              file=sys.stderr, flush=True)
        results["bulk"].append(bulk_resume(core, cpu, workflow, concurrency, size))
        budget.spent_all()
        print(f"  {results['bulk'][-1]}", file=sys.stderr, flush=True)
        save(results)


def _cpu_cell(cost: dict[str, float]) -> str:
    return f"{cost['core']:.2f} / {cost['postgres']:.2f} / {cost['thalamus']:.2f}"


def report(args: argparse.Namespace, facts: dict[str, Any], results: dict[str, Any]) -> None:
    command = "python bench/bench_real_core.py" + (" --quick" if args.quick else "")
    lines = [
        "### Real Core (be56c90): status and list cost, rate limit, bulk resume over REST",
        "",
        f"Command: `{command}` ({facts['date']}, load average at start {facts['load_average']})"
        + (
            f"; the rate-limit and bulk parts ran again on a fresh Core with `--from-bulk` "
            f"({results['bulk_run_facts']['date']}, load average {results['bulk_run_facts']['load_average']})"
            if "bulk_run_facts" in results
            else ""
        )
        + ". Real Core, its PostgreSQL 15, the fake Thalamus and the SDK worker on this machine, while "
        "other engineers' test suites ran on it. Core CPU is read from /proc: BEAM / PostgreSQL / fake "
        "Thalamus, in ms per call (the clock ticks every 10 ms: per-call figures come from batches).",
        "",
        "gRPC on this release (one call each): "
        + "; ".join(f"{name}: {outcome}" for name, outcome in results["grpc"].items())
        + ". Every measurement below is therefore over REST.",
        "",
        "**Status query vs the execution's events** (`GET /api/v1/executions/{id}`, sequential; long "
        "executions made by copying a real step event):",
        "",
        table(
            ["events", "calls", "median (ms)", "p95 (ms)", "Core CPU per call (ms): BEAM / PG / Thalamus"],
            [[row["events"], row["calls"], f"{row['median_ms']:.1f}", f"{row['p95_ms']:.1f}",
              _cpu_cell(row["cpu_ms"])] for row in results["status"]],
        ),
        "",
        f"Our client over REST on a {100 if args.quick else 1000}-event execution: "
        f"{results['client_on_long']}.",
        "",
        "**List and status vs the executions stored** (clones of one real failed execution; "
        "`GET /api/v1/executions?workflow=rc_fail&status=failed&limit=100`):",
        "",
        table(
            ["failed executions", "first page (ms)", "first page Core CPU (ms)", "pages",
             "whole listing (s)", "Core CPU per page (ms)", "status of one (ms)", "status Core CPU (ms)"],
            [[row["executions"], f"{row['first_page_ms']:.0f}", _cpu_cell(row["first_page_cpu_ms"]),
              row["pages"], f"{row['listing_s']:.2f}", _cpu_cell(row["listing_cpu_ms_per_page"]),
              f"{row['status_ms']:.1f}", _cpu_cell(row["status_cpu_ms"])] for row in results["list"]],
        ),
        "",
    ]
    contention = results["contention"]
    lines += [
        f"**Reads wait for each other**: a status query took {contention['alone_ms']:.1f} ms (median) alone "
        f"and {contention['during_ms']:.0f} ms (median; worst {contention['during_worst_ms']:.0f} ms, "
        f"{contention['during_calls']} calls) while another connection paged through the whole listing "
        f"({contention['pages']} pages): Core's EventStore is one GenServer that answers every read in turn. "
        f"After the long executions were stored, the first page of the same list took "
        f"{results['list_after_long']:.0f} ms (every list call reads every event stored).",
        "",
    ]
    if "burst" in results:
        burst_result = results["burst"]
        lines += [
            f"**Rate limit, raw**: {burst_result['requests']} sequential status GETs from the start of a "
            f"minute took {burst_result['seconds']:.1f} s; answers {burst_result['codes']}; first 429 at "
            f"request {burst_result['first_429_at_request']}, `retry-after: {burst_result['retry_after']}`, "
            f"body `{burst_result['body_429']}`.",
            "",
        ]
    if "fleet_at_limit" in results:
        fleet = results["fleet_at_limit"]
        samples = ", ".join(f"{t}s: {ok}/{limited}" for t, ok, limited in fleet["samples"])
        lines += [
            f"**Rate limit, our trigger**: {fleet['triggers']} `CerebelumExecutionTrigger`s over REST "
            f"polling "
            f"every {fleet['interval']:g} s ({fleet['triggers'] * 60 / fleet['interval']:.0f} requests a "
            f"minute asked) for {fleet['seconds']:.0f} s from a minute's start. Core answered "
            f"{fleet['answers']}; triggers alive at the end {fleet['alive']}/{fleet['triggers']}, events "
            f"{Counter(fleet['events']) or 'none'}. Cumulative 200/429 answers: {samples}.",
            "",
        ]
    rows = []
    for run in results["bulk"]:
        counts = run["counts"]
        rows.append([
            run["expected"],
            f"{run['concurrency']}" + (f" + PROTOTYPE: {run['prototype']}" if run.get("prototype") else ""),
            f"{run['wall_s']:.1f}",
            f"{run['expected'] / run['wall_s']:.0f}" if not run.get("raised") else "n/a",
            run["requests"], run["answers"],
            ", ".join(f"{key} {value}" for key, value in counts.items() if value),
            f"{run['core_cpu_s']['core']:.1f} / {run['core_cpu_s']['postgres']:.1f} / "
            f"{run['core_cpu_s']['thalamus']:.1f}",
            "; ".join(f"{count}x {message}" for message, count in run["errors"].items())
            + (f"run raised {run['raised'][:200]}" if run.get("raised") else "") or "none",
        ])
    lines += [
        "**Bulk resume over REST** (`resume_matching`, each run on its own set of copies of a real failed "
        "execution and from a fresh minute; Core answers \"resumed\" to each, starts an engine that records "
        "another failure, and the read-back 1 s later finds it FAILED: `not_resumed`). Executions started "
        "over gRPC and run by the worker were tried first: this release stalled after 200 to 1,000 of them "
        "(ExecuteWorkflow past a 60 s deadline, no more steps sent to the worker) in three of four runs.",
        "",
        table(
            ["executions", "max_concurrency", "wall (s)", "executions/s", "REST requests", "Core's answers",
             "summary", "Core CPU (s): BEAM / PG / Thalamus", "errors (most common)"],
            rows,
        ),
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("real_core", "\n".join(lines))


if __name__ == "__main__":
    main()
