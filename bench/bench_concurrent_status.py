"""200 get_execution_status calls in flight against a Core answering in 50 ms.

Ours (ExecutionClient on grpc.aio, asyncio.gather) against the reference cerebelum-sdk client,
whose async methods block the event loop. Three processes: the Core emulator (with 50 ms added
to every call) so that it does not share a GIL with the client being measured; ours; and the
reference, which cannot share a process with our generated proto code. Both clients make one
warm-up call first (channel set-up), then time the calls.

    .venv/bin/python bench/bench_concurrent_status.py [--calls 200] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time


async def _gather_statuses(client, execution_ids: list[str]) -> float:
    await client.get_execution_status(execution_ids[0])  # warm-up: open the channel
    started = time.perf_counter()
    answers = await asyncio.gather(*(client.get_execution_status(i) for i in execution_ids))
    elapsed = time.perf_counter() - started
    assert len(answers) == len(execution_ids)
    return elapsed


def reference(address: str, execution_ids: list[str]) -> float:
    """Wall time of the reference SDK client (only ever run in its own process)."""
    from cerebelum import ExecutionClient

    client = ExecutionClient(core_url=address)
    try:
        return asyncio.run(_gather_statuses(client, execution_ids))
    finally:
        client.close()


def ours(address: str, execution_ids: list[str]) -> float:
    """Wall time of our ExecutionClient."""
    from cerebelum_provider.client import ExecutionClient

    async def run() -> float:
        async with ExecutionClient(address) as client:
            return await _gather_statuses(client, execution_ids)

    return asyncio.run(run())


def serve(calls: int, latency: float) -> None:
    """Run the emulator with ``calls`` executions; print its address and ids; stop at stdin EOF."""
    from cerebelum_provider.emulator import CoreEmulator

    with CoreEmulator(latency=latency) as core:
        execution_ids = [core.start_execution("orders") for _ in range(calls)]
        print(json.dumps({"address": core.address, "execution_ids": execution_ids}), flush=True)
        sys.stdin.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server takes per call")
    parser.add_argument("--reference-only", nargs=2, metavar=("ADDRESS", "IDS_JSON"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_only:
        address, ids_json = args.reference_only
        print(json.dumps({"seconds": reference(address, json.loads(ids_json))}))
        return
    if args.serve_only:
        serve(args.calls, args.latency)
        return

    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve-only",
            "--calls",
            str(args.calls),
            "--latency",
            str(args.latency),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = json.loads(server.stdout.readline())
        address, execution_ids = ready["address"], ready["execution_ids"]
        ours_seconds = ours(address, execution_ids)
        done = subprocess.run(
            [sys.executable, __file__, "--reference-only", address, json.dumps(execution_ids)],
            capture_output=True,
            text=True,
            check=True,
        )
        reference_seconds = json.loads(done.stdout)["seconds"]
    finally:
        server.stdin.close()  # the server process exits when its stdin closes
        server.wait(30)
    print(f"{args.calls} get_execution_status calls in flight, server latency {args.latency * 1000:.0f} ms")
    print(f"  ours (ExecutionClient, asyncio.gather):      {ours_seconds:7.3f} s")
    print(f"  reference (cerebelum-sdk, asyncio.gather):   {reference_seconds:7.3f} s")
    print(f"  ratio reference / ours:                      {reference_seconds / ours_seconds:7.1f}x")


if __name__ == "__main__":
    main()
