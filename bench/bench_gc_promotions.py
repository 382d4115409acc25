"""Why a trigger fleet pays full garbage collections that bare grpc.aio does not: objects promoted
into the oldest generation per poll.

CPython (3.11) starts a full (generation 2) collection once generation 2 has seen more than 10
generation-1 collections since the last full one AND the objects promoted into it since then exceed
25% of the objects the last full one left alive. In a triggerer, Airflow's heap makes each full
collection long (100-190 ms here), so how often young collections run, and how much they promote,
decides how often the loop stalls.

For each variant, in its own process, this runs ``bench_fleet_round2``'s pollers unchanged (N
triggers, or N bare ``grpc.aio`` loops with Airflow imported first, against the Core emulator in
its own process, starting over one poll interval) with a ``gc.callbacks`` hook that counts, over the
measured window: collections per generation, their longest pause, and the objects each generation-1
collection promotes (its young objects at start minus those it freed), per poll.

Variants: ``floor_grpc_airflow`` (bare pollers, evenly spread over the first interval, as in
``bench_fleet_round2``), ``floor_grpc_airflow+jitter`` (the same, each first poll after a random
0..interval wait, as the trigger does), ``ours_grpc`` (the trigger as packaged: evenly spread starts
plus its own random first wait), ``ours_grpc-jitter`` (the trigger with its random first wait
replaced by none, in this process only), ``ours_grpc+alone`` (the trigger reading its own
execution every poll, ``coalesce_polling=false``; without it the 1,000 triggers share listings, the
default, and a poll is counted as an answer the shared poller gives a trigger rather than a call
to Core).
``floor_http_airflow+jitter``, ``ours_http`` and ``ours_http+alone`` are the same over Core's REST
API (bare ``httpx`` GETs for the floor), at ``--http-interval`` (10 s, the trigger's default).
The client prototypes this script once had are gone (bench/RESULTS.md keeps what they measured):
``+lean``, the first attempt without the retry wrapper, is how the gRPC transport sends every call
now; ``+direct``, the bare stub call plus the whole conversion, was overtaken by
``ExecutionClient.poll_execution``, with which the trigger now polls and which converts the whole
status only when it is needed.

    .venv/bin/python bench/bench_gc_promotions.py                      # N=1000, 1 s poll, 25 s window
    .venv/bin/python bench/bench_gc_promotions.py --duration 60 --variants floor_grpc_airflow+jitter,ours_grpc
    .venv/bin/python bench/bench_gc_promotions.py --duration 60 --variants floor_http_airflow+jitter,ours_http
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_fleet_round2 as fleet
from _support import PYTHON, RemoteCore, machine, table

VARIANTS = (
    "floor_grpc_airflow",
    "floor_grpc_airflow+jitter",
    "ours_grpc",
    "ours_grpc+alone",
    "ours_grpc-jitter",
    "floor_http_airflow+jitter",
    "ours_http",
    "ours_http+alone",
)
#: Any variant takes ``+freeze``: ``gc.freeze()`` once everything is imported, before the pollers
#: start (what ``[cerebelum] triggerer_gc_freeze`` does), e.g. ``ours_grpc+freeze``.


def jitter_first_poll() -> None:
    """Bare pollers whose first call waits a random 0..interval, as the trigger's does."""
    plain_drive = fleet.drive

    async def drive(args, make_poller, options, start, interval):
        async def jittered(execution_id: str, events: list[Any]) -> None:
            await asyncio.sleep(random.uniform(0.0, interval))
            await make_poller(execution_id, events)

        return await plain_drive(args, jittered, options, start, interval)

    fleet.drive = drive


def even_first_poll() -> None:
    """The trigger without its random first wait: pollers then start evenly over one interval."""
    from cerebelum_provider.triggers import cerebelum

    class NoJitter:
        @staticmethod
        def uniform(low: float, high: float) -> float:
            return low

    cerebelum.random = NoJitter  # type: ignore[assignment]


class GenerationStats(fleet.GCPauses):
    """``GCPauses`` (what ``drive`` resets at the window's start) plus per-generation detail."""

    current: GenerationStats | None = None

    def __init__(self) -> None:
        self.window_started: float | None = None
        self.window_seconds = float("inf")
        self._young = 0
        self._clear()
        super().__init__()
        GenerationStats.current = self

    def _clear(self) -> None:
        self.collections = [0, 0, 0]
        self.worst_by_generation = [0.0, 0.0, 0.0]
        self.promoted = 0
        self.oldest_after_full: list[int] = []

    def reset(self) -> None:
        super().reset()
        self._clear()
        self.window_started = time.perf_counter()

    def _in_window(self) -> bool:
        return (
            self.window_started is not None
            and time.perf_counter() - self.window_started <= self.window_seconds
        )

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        generation = info["generation"]
        if phase == "start":
            # The young generations are small: counting them costs little, and it happens before
            # the pause is timed.
            self._young = sum(len(gc.get_objects(young)) for young in range(generation + 1))
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        if not self._in_window():
            return
        self.worst = max(self.worst, pause)
        self.full_collections += generation == 2
        self.collections[generation] += 1
        self.worst_by_generation[generation] = max(self.worst_by_generation[generation], pause)
        if generation == 1:
            self.promoted += max(0, self._young - info["collected"])
        elif generation == 2:
            self.oldest_after_full.append(len(gc.get_objects(2)))


def run_variant(args: argparse.Namespace) -> None:
    fleet.GCPauses = GenerationStats  # drive() builds its pause probe from this name
    fleet_args = argparse.Namespace(
        control=args.control,
        ids_file=args.ids_file,
        duration=args.duration,
        interval=args.interval,
        address=args.address,
        http_url=args.http_url,
        http_interval=args.http_interval,
    )
    # The window is drive()'s: from its reset() for ``duration`` seconds (not the cancellation after).
    original_init = GenerationStats.__init__

    def init(self: GenerationStats) -> None:
        original_init(self)
        self.window_seconds = args.duration

    GenerationStats.__init__ = init  # type: ignore[method-assign]
    if "_airflow+jitter" in args.variant:
        jitter_first_poll()
    if args.variant.startswith("ours_grpc-jitter"):
        even_first_poll()
    options = {option for option in ("alone", "freeze") if f"+{option}" in args.variant}
    if args.variant.startswith("ours_"):
        result = fleet.run_ours(fleet_args, fleet.api_of(args.variant), options, "spread")
    elif args.variant.startswith("floor_http"):
        result = fleet.run_floor_http(fleet_args, options, "spread", with_airflow=True)
    else:
        result = fleet.run_floor_grpc(fleet_args, options, "spread", with_airflow=True)
    stats = GenerationStats.current
    assert stats is not None
    gc.collect()
    result.update(
        collections=stats.collections,
        worst_pause_ms=[round(value * 1000, 1) for value in stats.worst_by_generation],
        promoted=stats.promoted,
        promoted_per_poll=stats.promoted / result["polls"] if result["polls"] else None,
        oldest_after_full=stats.oldest_after_full,
        heap_objects=len(gc.get_objects()),
        thresholds=gc.get_threshold(),
    )
    print(json.dumps(result), flush=True)


def measure(name: str, core: RemoteCore, ids_file: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        PYTHON,
        __file__,
        "--variant",
        name,
        "--control",
        json.dumps(core.control),
        "--address",
        core.address,
        "--http-url",
        core.rest_url(),
        "--ids-file",
        ids_file,
        "--duration",
        str(args.duration),
        "--interval",
        str(args.interval),
        "--http-interval",
        str(args.http_interval),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"variant {name} exited {completed.returncode}:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=1000, help="N pollers (default 1000)")
    parser.add_argument("--duration", type=float, default=25.0, help="measured window, s (default 25)")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval over gRPC, s (default 1)")
    parser.add_argument(
        "--http-interval", type=float, default=10.0, help="poll interval over REST, s (default 10)"
    )
    parser.add_argument("--latency", type=float, default=0.005, help="emulator latency per call, s")
    parser.add_argument("--runs", type=int, default=1, help="runs of each variant (default 1)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--control", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--http-url", help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run_variant(args)
        return
    facts = machine()
    rows = []
    with RemoteCore.start(latency=args.latency) as core:
        ids_file = os.path.join(tempfile.mkdtemp(prefix="cerebelum-bench-gc-"), "ids.json")
        Path(ids_file).write_text(json.dumps(core.seed("fleet", args.triggers, "running")))
        for run in range(args.runs):
            for name in args.variants.split(","):
                result = measure(name, core, ids_file, args)
                shown = {key: value for key, value in result.items() if key != "endings"}
                print(f"run {run + 1}: {name}: {shown}", file=sys.stderr, flush=True)
                minutes = result["window_seconds"] / 60
                rows.append(
                    [
                        name,
                        round(result["polls"] / result["window_seconds"]),
                        f"{result['cpu_per_poll_us']:.0f}" if result["cpu_per_poll_us"] else "n/a",
                        " / ".join(f"{count / minutes:.0f}" for count in result["collections"]),
                        " / ".join(f"{pause:.0f}" for pause in result["worst_pause_ms"]),
                        f"{result['promoted_per_poll']:.1f}"
                        if result["promoted_per_poll"] is not None
                        else "n/a",
                        f"{result['heap_objects']:,}",
                        f"{result['worst_lag_ms']:.0f}",
                    ]
                )
    print(f"Command: `python {' '.join(sys.argv)}` ({facts['date']}, load average {facts['load_average']})")
    print()
    print(
        table(
            [
                "variant",
                "polls/s",
                "CPU/poll (us)",
                "collections/min gen 0 / 1 / 2",
                "worst pause (ms) gen 0 / 1 / 2",
                "objects promoted to gen 2 per poll",
                "heap objects at end",
                "worst loop lag (ms)",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
