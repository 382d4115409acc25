"""What a client test pays per transport: a fresh client, N status calls, close.

The pattern of tests/client/test_client_emulator.py (one client per test) against one emulator in
this process, through each route: Core's gRPC API and its REST API over loopback, and the REST
app in process (``CoreEmulator.client_transport()``). The emulator shares this process, as it
does in the tests, so the figures are what a test run pays, not a client's CPU alone. Reported as
ratios to the in-process route (median of the rounds).

    .venv/bin/python bench/bench_transports.py [--calls 20] [--rounds 30] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import median, write_section  # noqa: E402


def measure(calls: int, rounds: int) -> dict[str, float]:
    """Median seconds of one round (fresh client, ``calls`` status calls, close) per route."""
    from cerebelum_provider.client import SyncExecutionClient
    from cerebelum_provider.emulator import CoreEmulator

    with CoreEmulator() as core:
        execution_id = core.start_execution("orders")
        routes = {
            "grpc (loopback)": lambda: SyncExecutionClient(core.address),
            "http (loopback)": lambda: SyncExecutionClient(core.http_url),
            "in process": lambda: SyncExecutionClient(transport=core.client_transport(blocking=True)),
        }
        times: dict[str, list[float]] = {route: [] for route in routes}
        for _ in range(rounds):
            for route, make in routes.items():  # interleaved, so drifting load hits every route alike
                started = time.perf_counter()
                with make() as client:
                    for _ in range(calls):
                        client.get_execution_status(execution_id)
                times[route].append(time.perf_counter() - started)
    return {route: median(values) for route, values in times.items()}


def ssl_roots_ratio(rounds: int) -> float:
    """How much longer an httpx client takes to make with its own default SSL context (what each
    HTTP transport did before it shared one) than with a shared one."""
    import httpx

    def make(**verify: object) -> float:
        started = time.perf_counter()
        httpx.Client(base_url="http://127.0.0.1:1", trust_env=True, **verify).close()  # type: ignore[arg-type]
        return time.perf_counter() - started

    shared = httpx.create_ssl_context()
    own = median([make() for _ in range(rounds)])
    return own / median([make(verify=shared) for _ in range(rounds)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="5 rounds, to check that it runs")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 5
    figures = measure(args.calls, args.rounds)
    base = figures["in process"]
    lines = [
        (
            f"### Client tests per transport: a fresh client, {args.calls} status calls, close "
            f"(median of {args.rounds})"
        ),
        "",
        "Command: `python bench/bench_transports.py`",
        "",
        "| route | time / in-process time |",
        "|---|---|",
        *(f"| {route} | {seconds / base:.1f}x |" for route, seconds in figures.items()),
        "",
        (
            "Making an httpx client with its own default SSL context (loading certifi's roots), as "
            "each HTTP transport did before they shared one: "
            f"{ssl_roots_ratio(args.rounds):.0f}x the time with the shared context."
        ),
    ]
    print("\n".join(lines))
    write_section("transports", "\n".join(lines))


if __name__ == "__main__":
    main()
