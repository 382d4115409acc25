"""Triggerer fleet: N CerebelumExecutionTriggers in one event loop, as Airflow's triggerer runs them.

Each trigger's ``run()`` async generator is consumed by its own task (as
``airflow.jobs.triggerer_job_runner.TriggerRunner.run_trigger`` does), with the connection read
from ``AIRFLOW_CONN_CEREBELUM_DEFAULT``. The executions stay RUNNING, so every trigger polls at
its interval for the whole window. The triggers start spread over the first poll interval (as
deferrals reach a triggerer over time), then the window is measured after a warm-up.

Every variant runs in its own process against the same emulator process (latency added to every
call), so the CPU time measured (``time.process_time``, all threads) is the client's alone:

- floor: bare ``grpc.aio`` unary calls on one channel, no conversion, no retry policy;
- ours: the real ``CerebelumExecutionTrigger`` (one shared channel per loop), plaintext and TLS;
- channel per poll: the same trigger with a client that opens and closes a channel per poll
  (the dbt Cloud provider's habit), plaintext and TLS (self-signed CA made with cryptography);
- reference: a trigger polling through the cerebelum-sdk ``ExecutionClient`` (one per trigger,
  as a user would write it), in its own process (it cannot share one with our proto module).

Reported per variant: polls in the window, client CPU per poll, worst event-loop lag (a 10 ms
ticker's largest overshoot), ESTABLISHED TCP connections of the process to Core (sampled by the
parent with psutil) and the connections Core saw opened during the run (emulator peers).

    .venv/bin/python bench/bench_triggerer_fleet.py            # N=2000, 30 s window, 1 s polls
    .venv/bin/python bench/bench_triggerer_fleet.py --quick    # N=200, 5 s window
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import (  # noqa: E402
    PYTHON,
    RemoteCore,
    LoopLag,
    established_connections,
    machine,
    make_tls_dir,
    port_of,
    table,
    write_section,
)

VARIANTS = ("floor", "ours", "ours_gc_frozen", "ours_tls", "per_poll", "per_poll_tls", "reference")
LABELS = {
    "floor": "(a) floor: bare grpc.aio, one channel",
    "ours": "ours: CerebelumExecutionTrigger",
    "ours_gc_frozen": "ours, gc.freeze() after start-up",
    "ours_tls": "ours, TLS",
    "per_poll": "(b) same trigger, new channel per poll",
    "per_poll_tls": "(b) same trigger, new channel per poll, TLS",
    "reference": "(c) cerebelum-sdk client in the trigger",
}


# -- the variants (each in its own process) ---------------------------------------------------


def _connection_uri(address: str, ca_path: str | None) -> str:
    if ca_path is None:
        return f"cerebelum://{address}?api=grpc"
    return f"cerebelum://{address}?api=grpc&tls=true&ca_cert={ca_path}&server_name=localhost"


class GCPauses:
    """The longest garbage-collection pause and the full (generation 2) collections seen."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.full_collections = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def reset(self) -> None:
        self.worst, self.full_collections = 0.0, 0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.worst = max(self.worst, time.perf_counter() - self._started)
        self.full_collections += info["generation"] == 2


async def _drive(args: argparse.Namespace, make_poller) -> dict[str, Any]:
    """Start one poller task per execution spread over one interval, warm up, measure a window."""
    core = RemoteCore.attach(json.loads(args.control))
    if args.variant == "ours_gc_frozen":
        # What a triggerer could do after start-up: move the objects alive now (Airflow's modules,
        # mostly) out of the collector's sight, so full collections only walk what is new.
        gc.freeze()
    pauses = GCPauses()
    execution_ids = json.loads(Path(args.ids_file).read_text())
    lag = LoopLag().start()
    events: list[Any] = []
    tasks = []

    async def start_later(delay: float, execution_id: str) -> None:
        await asyncio.sleep(delay)
        await make_poller(execution_id, events)

    # Each poller starts after its own delay (not the driver sleeping between starts): a variant
    # that blocks the loop would otherwise stretch the start-up by the length of its blocking.
    for index, execution_id in enumerate(execution_ids):
        delay = args.interval * index / len(execution_ids)
        tasks.append(asyncio.create_task(start_later(delay, execution_id)))
    await asyncio.sleep(3 * args.interval)
    counts_before = core.call_counts().get("GetExecutionStatus", 0)
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    lag.reset()
    pauses.reset()
    await asyncio.sleep(args.duration)
    cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
    polls = core.call_counts().get("GetExecutionStatus", 0) - counts_before
    worst_lag, worst_cpu_lag = lag.worst, lag.worst_cpu
    worst_gc, full_collections = pauses.worst, pauses.full_collections
    alive = sum(1 for task in tasks if not task.done())
    # Why the others ended: an event (its status and error type) or an exception (its type).
    endings = Counter(
        type(task.exception()).__name__ for task in tasks if task.done() and task.exception() is not None
    )
    endings.update(f"{describe_event(event)}" for event in events)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await lag.stop()
    core.close()
    return {
        "polls": polls,
        "cpu_seconds": cpu,
        "window_seconds": wall,
        "cpu_per_poll_us": cpu / polls * 1e6 if polls else None,
        "worst_lag_ms": worst_lag * 1000,
        "worst_cpu_lag_ms": worst_cpu_lag * 1000,
        "worst_gc_pause_ms": worst_gc * 1000,
        "full_collections": full_collections,
        "errors": ERRORS[0],
        "alive": alive,
        "events": len(events),
        "endings": dict(endings),
    }


def describe_event(event: Any) -> str:
    payload = getattr(event, "payload", None)
    if isinstance(payload, dict):
        return f"event {payload.get('status')}/{payload.get('error_type')}: {str(payload.get('message'))[:120]}"
    return f"event {type(event).__name__}"


def _trigger_poller(trigger_class):
    async def poll(execution_id: str, events: list[Any]) -> None:
        trigger = trigger_class(execution_id=execution_id, poll_interval=POLL_INTERVAL)
        async for event in trigger.run():
            events.append(event)

    return poll


POLL_INTERVAL = 1.0
#: Failed calls of the floor variant (the others report how their triggers ended instead).
ERRORS = [0]


def variant_ours(args: argparse.Namespace, per_poll: bool) -> dict[str, Any]:
    """Our trigger; with ``per_poll`` its client opens a new channel for every poll."""
    os.environ["AIRFLOW_CONN_CEREBELUM_DEFAULT"] = _connection_uri(args.address, args.ca)
    from cerebelum_provider.client import ExecutionClient
    from cerebelum_provider.hooks.cerebelum import CerebelumHook
    from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger

    if per_poll:

        class ChannelPerPollClient:
            """Opens a channel, asks, closes it: the dbt-style new session per poll."""

            def __init__(self, client_kwargs: dict[str, Any]) -> None:
                self.client_kwargs = client_kwargs
                self.address = args.address

            async def poll_execution(self, execution_id: str) -> Any:
                async with ExecutionClient(**self.client_kwargs) as client:
                    return await client.poll_execution(execution_id)

            async def list_execution_ids(self, **kwargs: Any) -> Any:
                async with ExecutionClient(**self.client_kwargs) as client:
                    return await client.list_execution_ids(**kwargs)

        def shared_async_client(self: CerebelumHook, settings: Any) -> Any:
            return ChannelPerPollClient(settings.client_kwargs())

        # The trigger builds its client from the settings it looked up (CerebelumHook.shared_async_client).
        CerebelumHook.shared_async_client = shared_async_client  # type: ignore[method-assign]

    return asyncio.run(_drive(args, _trigger_poller(CerebelumExecutionTrigger)))


def variant_floor(args: argparse.Namespace) -> dict[str, Any]:
    """One grpc.aio channel, one bare unary call per poll: the least a poll can cost."""
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
                    ERRORS[0] += 1  # counted, and the floor keeps polling
                else:
                    if response.status in (pb.EXECUTION_COMPLETED, pb.EXECUTION_FAILED):
                        events.append(response)
                        return
                await asyncio.sleep(args.interval)

        try:
            return await _drive(args, poll)
        finally:
            await channel.close()

    return asyncio.run(run())


def variant_reference(args: argparse.Namespace) -> dict[str, Any]:
    """A trigger written with the cerebelum-sdk client (one per trigger); its calls block the loop."""
    from airflow.triggers.base import BaseTrigger, TriggerEvent
    from cerebelum import ExecutionClient
    from cerebelum.execution_client import ExecutionState

    class ReferenceSdkTrigger(BaseTrigger):
        def __init__(self, execution_id: str, poll_interval: float) -> None:
            super().__init__()
            self.execution_id, self.poll_interval = execution_id, poll_interval

        def serialize(self) -> tuple[str, dict[str, Any]]:
            kwargs = {"execution_id": self.execution_id, "poll_interval": self.poll_interval}
            return "ReferenceSdkTrigger", kwargs

        async def run(self):
            client = ExecutionClient(core_url=args.address)
            try:
                while True:
                    status = await client.get_execution_status(self.execution_id)
                    if status.status in (ExecutionState.COMPLETED, ExecutionState.FAILED):
                        yield TriggerEvent({"status": status.status.value})
                        return
                    await asyncio.sleep(self.poll_interval)
            finally:
                client.close()

    return asyncio.run(_drive(args, _trigger_poller(ReferenceSdkTrigger)))


def run_variant(args: argparse.Namespace) -> None:
    global POLL_INTERVAL
    POLL_INTERVAL = args.interval
    name = args.variant
    if name == "floor":
        result = variant_floor(args)
    elif name in ("ours", "ours_gc_frozen", "ours_tls"):
        result = variant_ours(args, per_poll=False)
    elif name in ("per_poll", "per_poll_tls"):
        result = variant_ours(args, per_poll=True)
    else:
        result = variant_reference(args)
    print(json.dumps(result), flush=True)


# -- the parent: emulators, one process per variant, the table --------------------------------


def measure(
    name: str, core: RemoteCore, ids_file: str, args: argparse.Namespace, ca: str | None
) -> dict[str, Any]:
    peers_before = core.peers()
    command = [
        PYTHON, __file__, "--variant", name, "--control", json.dumps(core.control), "--address", core.address,
        "--ids-file", ids_file, "--duration", str(args.duration), "--interval", str(args.interval),
    ]
    if ca is not None:
        command += ["--ca", ca]
    # Output goes to files: the triggers log a line each, more than a pipe holds while we sample.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        port, connections = port_of(core.address), 0
        while child.poll() is None:
            try:
                connections = max(connections, established_connections(port, child.pid))
            except Exception:  # the process ended between poll() and the sample
                pass
            time.sleep(1.0)
        out.seek(0), err.seek(0)
        if child.returncode != 0:
            raise RuntimeError(f"variant {name} exited {child.returncode}:\n{err.read()[-3000:]}")
        result = json.loads(out.read().strip().splitlines()[-1])
    result["connections_max"] = connections
    result["connections_opened"] = len(core.peers() - peers_before)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=200, 5 s window")
    parser.add_argument("--triggers", type=int, default=None, help="N (default 2000; 200 with --quick)")
    parser.add_argument("--duration", type=float, default=None, help="measured window, s (default 30; 5 with --quick)")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval, s")
    parser.add_argument("--latency", type=float, default=0.005, help="emulator latency per call, s")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--control", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run_variant(args)
        return
    args.triggers = args.triggers or (200 if args.quick else 2000)
    args.duration = args.duration or (5.0 if args.quick else 30.0)
    wanted = [name for name in args.variants.split(",") if name]
    facts = machine()
    tls_dir = make_tls_dir()
    ca = os.path.join(tls_dir, "ca.pem")
    results: dict[str, dict[str, Any]] = {}
    plain = RemoteCore.start(latency=args.latency)
    tls = RemoteCore.start(latency=args.latency, tls_dir=tls_dir)
    with plain, tls:
        folder = tempfile.mkdtemp(prefix="cerebelum-bench-fleet-")
        ids_files = {}
        for label, core in (("plain", plain), ("tls", tls)):
            ids_files[label] = os.path.join(folder, f"{label}.json")
            Path(ids_files[label]).write_text(json.dumps(core.seed("fleet", args.triggers, "running")))
        for name in wanted:
            secure = name.endswith("_tls")
            core = tls if secure else plain
            print(f"running {name} ...", file=sys.stderr, flush=True)
            ids_file = ids_files["tls" if secure else "plain"]
            results[name] = measure(name, core, ids_file, args, ca if secure else None)
            print(f"  {name}: {results[name]}", file=sys.stderr, flush=True)
    report(args, facts, results)


def ending_note(result: dict[str, Any]) -> str:
    """Why triggers ended early, grouped by error type (messages differ only by execution id)."""
    kinds = Counter()
    for ending, count in result.get("endings", {}).items():
        kinds[ending.split(":")[0]] += count
    if result.get("errors"):
        kinds["failed calls, polling went on"] += result["errors"]
    return "".join(f"; {kind}: {count}" for kind, count in kinds.items())


def report(args: argparse.Namespace, facts: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    ours = results.get("ours", {}).get("cpu_per_poll_us")
    floor = results.get("floor", {}).get("cpu_per_poll_us")
    rows = []
    for name, result in results.items():
        per_poll = result["cpu_per_poll_us"]
        vs_ours = f"{per_poll / ours:.2f}x" if per_poll and ours else "n/a"
        rows.append(
            [
                LABELS[name],
                result["polls"],
                f"{result['polls'] / result['window_seconds']:.0f}",
                f"{per_poll:.0f}" if per_poll else "n/a",
                vs_ours,
                f"{result['worst_lag_ms']:.0f}",
                f"{result['worst_cpu_lag_ms']:.0f}",
                f"{result['worst_gc_pause_ms']:.0f} ({result['full_collections']})",
                result["connections_max"],
                result["connections_opened"],
                f"{result['alive']}/{args.triggers}" + ending_note(result),
            ]
        )
    command = "python bench/bench_triggerer_fleet.py" + (" --quick" if args.quick else "")
    lines = [
        f"### 1. Triggerer fleet: {args.triggers} triggers, poll {args.interval:g} s, window {args.duration:g} s, "
        f"emulator latency {args.latency * 1000:g} ms",
        "",
        f"Command: `{command}` ({facts['date']}, load average at start {facts['load_average']}).",
        "",
        table(
            [
                "variant", "polls", "polls/s", "CPU/poll (us)", "CPU/poll vs ours", "worst loop lag (ms)",
                "worst loop CPU stretch (ms)",
                "worst GC pause (ms) (full collections)",
                "TCP conns to Core (max)", "new client ports seen by Core", "triggers alive",
            ],
            rows,
        ),
        "",
    ]
    if ours and floor:
        verdict = "met" if ours <= 1.5 * floor else "MISSED"
        lines.append(f"- ours / floor CPU per poll: **{ours / floor:.2f}x** (goal <= 1.5x: {verdict}).")
    if "ours" in results:
        lag = results["ours"]["worst_lag_ms"]
        ours_result = results["ours"]
        lines.append(
            f"- worst event-loop lag, ours: **{lag:.0f} ms** (goal < 50 ms: {'met' if lag < 50 else 'MISSED'}); "
            f"the loop's longest CPU stretch between two ticks: {ours_result['worst_cpu_lag_ms']:.0f} ms; "
            f"longest GC pause: {ours_result['worst_gc_pause_ms']:.0f} ms; "
            f"TCP connections to Core: **{ours_result['connections_max']}** (goal 1)."
        )
    print("\n".join(lines))
    if not args.no_write:
        write_section("triggerer_fleet", "\n".join(lines))


if __name__ == "__main__":
    main()
