"""Triggerer fleet, second round: both APIs, bare-client floors in the same run, and the
prototypes that smooth the loop (a jittered first poll, ``gc.freeze()`` after start-up).

N ``CerebelumExecutionTrigger``s run in one event loop as Airflow's triggerer runs them (one task
per trigger consuming ``run()``), against the Core emulator in its own process, which serves gRPC
and Core's REST API. Every variant runs in its own process, one after the other; the CPU time
measured (``time.process_time``) is the client's alone. Start modes:

- ``spread``: the triggers start over the first poll interval (deferrals arriving over time);
- ``burst``: all start at the same moment (a triggerer that starts, or takes over, N triggers).

Variants (``--variants``):

- ``floor_grpc``: bare ``grpc.aio`` unary calls on one channel, no conversion, no retry policy;
- ``floor_grpc_airflow``: the same with ``airflow`` imported first: the triggerer's heap, which
  the garbage collector walks, without the provider;
- ``floor_http``: bare ``httpx.AsyncClient`` GETs (the provider's pool limits), JSON decoded;
  ``floor_http_airflow`` the same with ``airflow`` imported first;
- ``ours_grpc`` / ``ours_http``: the real trigger;
- ``+jitter`` (PROTOTYPE, not package code): the trigger subclass ``JitteredFirstPollTrigger``
  below, whose first status query waits a random 0..poll_interval;
- ``+freeze``: ``gc.freeze()`` once Airflow and the provider are imported, before the triggers start;
- ``+alone``: the connection's ``coalesce_polling=false``: each trigger reads its own execution every
  interval. Without it the triggers share their polling (the default), so most polls send nothing:
  a trigger's polls are then counted as the answers the shared poller gives it (one a listing
  pass, or one a status read), not Core's calls.

Names combine: ``ours_grpc+jitter+freeze:burst``. Each run prints one JSON line per variant and,
with ``--runs 3``, the medians. Reported: polls, CPU per poll and its ratio to the floor of the same
API in the same run, worst event-loop lag (a 10 ms ticker's overshoot) and its ratio to the floor,
the loop's longest CPU stretch, longest GC pause, TCP connections to Core.

    .venv/bin/python bench/bench_fleet_round2.py                 # N=1000, 20 s window, 3 runs
    .venv/bin/python bench/bench_fleet_round2.py --quick         # N=200, 5 s window, 1 run
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import (
    PYTHON,
    LoopLag,
    RemoteCore,
    established_connections,
    machine,
    median,
    port_of,
    table,
    write_section,
)
from bench_triggerer_fleet import GCPauses, describe_event

DEFAULT_VARIANTS = (
    "floor_grpc:spread",
    "floor_grpc_airflow:spread",
    "ours_grpc:spread",
    "ours_grpc+freeze:spread",
    "floor_grpc:burst",
    "ours_grpc:burst",
    "ours_grpc+jitter:burst",
    "ours_grpc+jitter+cache+freeze:burst",
    "floor_http:spread",
    "ours_http:spread",
    "ours_http+freeze:spread",
    "floor_http:burst",
    "ours_http:burst",
    "ours_http+jitter+cache+freeze:burst",
)


def parse_variant(name: str) -> tuple[str, set[str], str]:
    """``"ours_grpc+jitter:burst"`` -> ("ours_grpc", {"jitter"}, "burst")."""
    body, _, start = name.partition(":")
    base, *options = body.split("+")
    bases = ("floor_grpc", "floor_grpc_airflow", "floor_http", "floor_http_airflow", "ours_grpc", "ours_http")
    if base not in bases:
        raise SystemExit(f"unknown variant base {base!r} in {name!r}")
    unknown = set(options) - {"jitter", "freeze", "cache", "alone"}
    if unknown or start not in ("spread", "burst"):
        raise SystemExit(f"bad variant {name!r}: options jitter/freeze/cache/alone, start spread/burst")
    if set(options) & {"jitter", "cache", "alone"} and not base.startswith("ours"):
        raise SystemExit(f"jitter, cache and alone are trigger options; {name!r} has no trigger")
    return base, set(options), start


def api_of(base: str) -> str:
    return "http" if base.startswith(("floor_http", "ours_http")) else "grpc"


# -- the prototype ----------------------------------------------------------------------------


def jittered_trigger_class():
    """PROTOTYPE of a package change: the trigger's first query waits a random 0..poll_interval.

    The proposed change is in ``CerebelumExecutionTrigger._watch``: before the polling loop,
    ``await self._sleep(random.uniform(0, self.poll_interval))`` (capped by ``end_time``). Here it
    is a subclass so the package stays untouched.
    """
    from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger

    class JitteredFirstPollTrigger(CerebelumExecutionTrigger):
        async def _watch(self):
            await self._sleep(self._cap(random.uniform(0, self.poll_interval), self.end_time))
            return await super()._watch()

    return JitteredFirstPollTrigger


def cache_connection_settings(ttl: float = 60.0) -> None:
    """PROTOTYPE of a package change: one connection lookup per connection id and process per ``ttl``.

    Every trigger builds its own ``CerebelumHook`` and so looks its connection up again (Airflow's
    lookup: secrets backends, URI parsing; about 1 ms of CPU each here), all at once when a
    triggerer starts N triggers. The proposed change is in ``CerebelumHook.aget_settings``: a
    module-level cache ``{conn_id: (expires_at, task)}`` shared by the hooks of one process,
    single-flight (concurrent callers await the same lookup), entries kept ``ttl`` seconds so an
    edited connection reaches new triggers within that time.
    """
    from cerebelum_provider.hooks.cerebelum import CerebelumHook

    original = CerebelumHook.aget_settings
    cache: dict[str, tuple[float, asyncio.Task[Any]]] = {}

    async def aget_settings(self: CerebelumHook) -> Any:
        now = time.monotonic()
        hit = cache.get(self.cerebelum_conn_id)
        if hit is None or hit[0] < now or (hit[1].done() and hit[1].exception() is not None):
            hit = (now + ttl, asyncio.ensure_future(original(self)))
            cache[self.cerebelum_conn_id] = hit
        self._settings = await asyncio.shield(hit[1])
        return self._settings

    CerebelumHook.aget_settings = aget_settings  # type: ignore[method-assign]


# -- one variant, in its own process ----------------------------------------------------------


async def drive(
    args: argparse.Namespace,
    make_poller,
    options: set[str],
    start: str,
    interval: float,
    count_polls=None,
) -> dict[str, Any]:
    """Start one poller per execution (spread or burst), warm up, measure a window.

    Polls are Core's status calls, or ``count_polls()``'s count when given (coalesced triggers).
    """
    if count_polls is None:
        core_for_counts = None

        def count_polls() -> int:
            return core_for_counts.call_counts().get("GetExecutionStatus", 0)

    core = core_for_counts = RemoteCore.attach(json.loads(args.control))
    if "freeze" in options:
        # What a triggerer can do once it has imported everything: move the objects alive now
        # (Airflow's and the provider's modules) out of the collector's sight.
        gc.collect()
        gc.freeze()
    pauses = GCPauses()
    execution_ids = json.loads(Path(args.ids_file).read_text())
    lag = LoopLag().start()
    events: list[Any] = []

    async def start_later(delay: float, execution_id: str) -> None:
        if delay:
            await asyncio.sleep(delay)
        await make_poller(execution_id, events)

    tasks = []
    for index, execution_id in enumerate(execution_ids):
        delay = interval * index / len(execution_ids) if start == "spread" else 0.0
        tasks.append(asyncio.create_task(start_later(delay, execution_id)))
    # A burst is measured from the start: the synchronised first polls are what it is about.
    warm_up = interval + 2.0 if start == "spread" else 0.0
    if warm_up:
        await asyncio.sleep(warm_up)
    counts_before = count_polls()
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    lag.reset()
    pauses.reset()
    await asyncio.sleep(args.duration)
    cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
    polls = count_polls() - counts_before
    result = {
        "polls": polls,
        "cpu_seconds": cpu,
        "window_seconds": wall,
        "cpu_per_poll_us": cpu / polls * 1e6 if polls else None,
        "worst_lag_ms": lag.worst * 1000,
        "worst_cpu_lag_ms": lag.worst_cpu * 1000,
        "worst_gc_pause_ms": pauses.worst * 1000,
        "full_collections": pauses.full_collections,
        "alive": sum(1 for task in tasks if not task.done()),
        "errors": FLOOR_ERRORS[0],
        "endings": dict(
            Counter(type(task.exception()).__name__ for task in tasks if task.done() and task.exception())
            + Counter(describe_event(event)[:60] for event in events)
        ),
    }
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await lag.stop()
    core.close()
    return result


#: Failed calls of the floors (they count and go on polling; triggers report how they ended).
FLOOR_ERRORS = [0]


def run_ours(args: argparse.Namespace, api: str, options: set[str], start: str) -> dict[str, Any]:
    alone = "&coalesce_polling=false&request_budget=1000000000" if "alone" in options else ""
    if api == "grpc":
        os.environ["AIRFLOW_CONN_CEREBELUM_DEFAULT"] = f"cerebelum://{args.address}?api=grpc{alone}"
    else:
        host_port = args.http_url.split("://", 1)[1]
        os.environ["AIRFLOW_CONN_CEREBELUM_DEFAULT"] = f"cerebelum://{host_port}?api=http{alone}"
    from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger

    trigger_class = jittered_trigger_class() if "jitter" in options else CerebelumExecutionTrigger
    polls = [0]
    if "alone" not in options:
        count_answers(polls)
    if "cache" in options:
        cache_connection_settings()
    interval = interval_of(args, api)

    async def poll(execution_id: str, events: list[Any]) -> None:
        trigger = trigger_class(execution_id=execution_id, poll_interval=interval)
        async for event in trigger.run():
            events.append(event)

    count_polls = None if "alone" in options else (lambda: polls[0])
    return asyncio.run(drive(args, poll, options, start, interval, count_polls))


def count_answers(polls: list[int]) -> None:
    """Count each answer the shared poller gives a wait (in this process only): a trigger whose
    answer came from a listing asks again at once, without sleeping, so its sleeps no longer count
    its polls."""
    from cerebelum_provider.triggers._shared_poll import SharedPoller

    answer = SharedPoller.poll

    async def counted(self: SharedPoller, wait: Any, **kwargs: Any) -> Any:
        result = await answer(self, wait, **kwargs)
        polls[0] += 1
        return result

    SharedPoller.poll = counted  # type: ignore[method-assign]


def interval_of(args: argparse.Namespace, api: str) -> float:
    return args.http_interval if api == "http" else args.interval


def run_floor_grpc(
    args: argparse.Namespace, options: set[str], start: str, with_airflow: bool
) -> dict[str, Any]:
    if with_airflow:
        import airflow.triggers.base  # noqa: F401 (the triggerer's heap, without the provider)
    import grpc.aio

    from cerebelum_provider.proto import worker_service_pb2 as pb
    from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

    async def run() -> dict[str, Any]:
        channel = grpc.aio.insecure_channel(args.address)
        stub = pb_grpc.WorkerServiceStub(channel)

        async def poll(execution_id: str, events: list[Any]) -> None:
            while True:
                try:
                    response = await stub.GetExecutionStatus(
                        pb.GetExecutionStatusRequest(execution_id=execution_id), timeout=10
                    )
                except grpc.aio.AioRpcError:
                    FLOOR_ERRORS[0] += 1
                else:
                    if response.status in (pb.EXECUTION_COMPLETED, pb.EXECUTION_FAILED):
                        events.append(response)
                        return
                await asyncio.sleep(args.interval)

        try:
            return await drive(args, poll, options, start, args.interval)
        finally:
            await channel.close()

    return asyncio.run(run())


def run_floor_http(
    args: argparse.Namespace, options: set[str], start: str, with_airflow: bool
) -> dict[str, Any]:
    if with_airflow:
        import airflow.triggers.base  # noqa: F401 (the triggerer's heap, without the provider)
    import httpx

    from cerebelum_provider.client._http_transport import POOL_LIMITS

    async def run() -> dict[str, Any]:
        client = httpx.AsyncClient(base_url=args.http_url, limits=POOL_LIMITS, timeout=10.0)

        async def poll(execution_id: str, events: list[Any]) -> None:
            while True:
                try:
                    answer = await client.get(f"/api/v1/executions/{execution_id}")
                    body = answer.json()
                except httpx.HTTPError:
                    FLOOR_ERRORS[0] += 1
                else:
                    if answer.status_code != 200:
                        FLOOR_ERRORS[0] += 1
                    elif body.get("state") in ("completed", "failed"):
                        events.append(body)
                        return
                await asyncio.sleep(args.http_interval)

        try:
            return await drive(args, poll, options, start, args.http_interval)
        finally:
            await client.aclose()

    return asyncio.run(run())


def run_variant(args: argparse.Namespace) -> None:
    base, options, start = parse_variant(args.variant)
    if base == "floor_grpc":
        result = run_floor_grpc(args, options, start, with_airflow=False)
    elif base == "floor_grpc_airflow":
        result = run_floor_grpc(args, options, start, with_airflow=True)
    elif base in ("floor_http", "floor_http_airflow"):
        result = run_floor_http(args, options, start, with_airflow=base == "floor_http_airflow")
    else:
        result = run_ours(args, api_of(base), options, start)
    print(json.dumps(result), flush=True)


# -- the parent -------------------------------------------------------------------------------


def measure(
    name: str, core: RemoteCore, http_url: str, ids_file: str, args: argparse.Namespace
) -> dict[str, Any]:
    command = [
        PYTHON, __file__, "--variant", name, "--control", json.dumps(core.control), "--address", core.address,
        "--http-url", http_url, "--ids-file", ids_file, "--duration", str(args.duration),
        "--interval", str(args.interval), "--http-interval", str(args.http_interval),
    ]
    port = port_of(core.address) if api_of(parse_variant(name)[0]) == "grpc" else port_of(http_url)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        connections = 0
        while child.poll() is None:
            try:
                connections = max(connections, established_connections(port, child.pid))
            except (psutil.NoSuchProcess, psutil.AccessDenied):  # it ended between poll() and the sample
                continue
            time.sleep(1.0)
        out.seek(0), err.seek(0)
        if child.returncode != 0:
            raise RuntimeError(f"variant {name} exited {child.returncode}:\n{err.read()[-3000:]}")
        result = json.loads(out.read().strip().splitlines()[-1])
    result["connections_max"] = connections
    return result


def one_run(args: argparse.Namespace, wanted: list[str], run: int) -> dict[str, dict[str, Any]]:
    results = {}
    with RemoteCore.start(latency=args.latency) as core:
        http_url = core.rest_url()
        folder = tempfile.mkdtemp(prefix="cerebelum-bench-fleet2-")
        ids_file = os.path.join(folder, "ids.json")
        Path(ids_file).write_text(json.dumps(core.seed("fleet", args.triggers, "running")))
        for name in wanted:
            print(f"run {run}: {name} ...", file=sys.stderr, flush=True)
            results[name] = measure(name, core, http_url, ids_file, args)
            shown = {key: value for key, value in results[name].items() if key != "endings"}
            print(f"  {shown}", file=sys.stderr, flush=True)
    return results


def floor_of(name: str) -> str:
    base, _, start = parse_variant(name)
    return f"floor_{api_of(base)}:{start}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=200, 5 s window, one run")
    parser.add_argument("--triggers", type=int, default=None, help="N (default 1000; 200 with --quick)")
    parser.add_argument("--duration", type=float, default=None, help="window, s (default 15; 5 with --quick)")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval over gRPC, s")
    parser.add_argument(
        "--http-interval", type=float, default=10.0,
        help="poll interval over REST, s (default 10, the trigger's default: httpx costs ~5x grpc.aio per "
        "call, so 1,000 triggers at 1 s would need more than this machine's 2 cores)",
    )
    parser.add_argument("--latency", type=float, default=0.005, help="emulator latency per call, s")
    parser.add_argument("--runs", type=int, default=None, help="runs (default 3; 1 with --quick)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    parser.add_argument("--json-out", default=None, help="also write every run's figures here")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--control", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--http-url", help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run_variant(args)
        return
    args.triggers = args.triggers or (200 if args.quick else 1000)
    args.duration = args.duration or (5.0 if args.quick else 15.0)
    args.runs = args.runs or (1 if args.quick else 3)
    wanted = [name for name in args.variants.split(",") if name]
    for name in wanted:
        parse_variant(name)
    facts = machine()
    runs = [one_run(args, wanted, run + 1) for run in range(args.runs)]
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"facts": facts, "runs": runs}, indent=1))
    report(args, facts, wanted, runs)


def report(args: argparse.Namespace, facts: dict[str, Any], wanted: list[str], runs: list[dict]) -> None:
    def ratios(name: str, key: str) -> list[float]:
        floor = floor_of(name)
        return [run[name][key] / run[floor][key] for run in runs
                if floor in run and run[floor][key] and run[name][key] is not None]

    rows = []
    for name in wanted:
        per_run = [run[name] for run in runs]
        cpu = [result["cpu_per_poll_us"] for result in per_run if result["cpu_per_poll_us"]]
        lag = [result["worst_lag_ms"] for result in per_run]
        cpu_ratio, lag_ratio = ratios(name, "cpu_per_poll_us"), ratios(name, "worst_lag_ms")
        endings = Counter()
        for result in per_run:
            endings.update(result.get("endings", {}))
            if result.get("errors"):
                endings["failed calls (polling went on)"] += result["errors"]
        rows.append([
            name,
            round(median([result["polls"] / result["window_seconds"] for result in per_run])),
            f"{median(cpu):.0f}" if cpu else "n/a",
            f"{median(cpu_ratio):.2f}x ({', '.join(f'{value:.2f}' for value in cpu_ratio)})"
            if cpu_ratio
            else "",
            f"{median(lag):.0f} ({', '.join(f'{value:.0f}' for value in lag)})",
            f"{median(lag_ratio):.2f}x" if lag_ratio else "",
            f"{median([result['worst_cpu_lag_ms'] for result in per_run]):.0f}",
            f"{median([result['worst_gc_pause_ms'] for result in per_run]):.0f}"
            f" ({median([result['full_collections'] for result in per_run]):.0f})",
            max(result["connections_max"] for result in per_run),
            f"{min(result['alive'] for result in per_run)}/{args.triggers}"
            + "".join(f"; {kind}: {count}" for kind, count in endings.items()),
        ])
    command = "python bench/bench_fleet_round2.py" + (" --quick" if args.quick else "")
    if args.variants != ",".join(DEFAULT_VARIANTS):
        command += f" --variants {args.variants}"
    lines = [
        f"### Triggerer fleet, round 2: {args.triggers} triggers, poll {args.interval:g} s (gRPC) / "
        f"{args.http_interval:g} s (REST), window "
        f"{args.duration:g} s, emulator latency {args.latency * 1000:g} ms, both APIs, median of {len(runs)} "
        "run(s)",
        "",
        f"Command: `{command}` ({facts['date']}, load average at start {facts['load_average']}). "
        "Each figure is the median over the runs (each run's value in brackets); ratios are taken within "
        "a run against the floor of the same API and start mode, then the median taken. `spread`: "
        "the triggers start over one interval and the window follows a 3-interval warm-up; `burst`: all "
        "start at once and the window starts with them. `+jitter` and `+cache` are PROTOTYPES in this "
        "script (a trigger subclass whose first query waits a random 0..poll_interval; one connection "
        "lookup per connection id and process), `+freeze` is `gc.freeze()` after imports.",
        "",
        table(
            ["variant", "polls/s", "CPU/poll (us)", "CPU/poll vs floor", "worst loop lag (ms)",
             "lag vs floor", "worst loop CPU stretch (ms)", "worst GC pause (ms) (full GCs)",
             "TCP conns (max)", "triggers alive"],
            rows,
        ),
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("fleet_round2", "\n".join(lines))


if __name__ == "__main__":
    main()
