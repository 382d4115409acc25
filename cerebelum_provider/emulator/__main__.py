"""``cerebelum-emulator serve``: run the Core emulator until Ctrl-C or SIGTERM.

Its ready line is ``Cerebelum Core emulator listening on HOST:PORT``; with ``--http-port`` it goes
on with `` (REST http://HOST:HTTP_PORT)``, so the gRPC address stays the first word after "on".
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from cerebelum_provider.emulator.scenario import load_scenario_file
from cerebelum_provider.emulator.server import CoreEmulator


def build_parser() -> argparse.ArgumentParser:
    """The command line: one ``serve`` subcommand."""
    parser = argparse.ArgumentParser(
        prog="cerebelum-emulator",
        description="A local Cerebelum Core (gRPC, and REST on request) for DAG development and tests.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the emulator until Ctrl-C or SIGTERM")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=9090, help="port (default 9090; 0 picks a free one)")
    serve.add_argument(
        "--http-port",
        type=int,
        default=None,
        help="also serve Core's REST API on this port (0 picks a free one; default: no REST)",
    )
    serve.add_argument("--db", default=None, help="SQLite event log file (default: in memory, lost on exit)")
    serve.add_argument("--demo", action="store_true", help="seed the demo executions (once per db)")
    serve.add_argument(
        "--scenario", default=None, help="JSON scenario file of workflows and executions to seed"
    )
    serve.add_argument(
        "--step-seconds",
        type=float,
        default=None,
        help="move running executions one step per S seconds of real time (default: they stand still)",
    )
    serve.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        metavar="N",
        help="refuse REST calls past N a calendar minute with 429, as Core does at 1000 (default: no limit)",
    )
    return parser


def serve(args: argparse.Namespace) -> int:
    """Run the server until a stop signal; return the exit status."""
    if args.step_seconds is not None and args.step_seconds <= 0:
        raise SystemExit(f"--step-seconds must be > 0, got {args.step_seconds}")
    if args.rate_limit is not None and args.rate_limit < 1:
        raise SystemExit(
            f"--rate-limit must be a whole number of requests a minute >= 1, got {args.rate_limit}"
        )
    if args.http_port is not None and not 0 <= args.http_port <= 65535:
        raise SystemExit(f"--http-port must be between 0 and 65535, got {args.http_port}")
    try:
        scenario = load_scenario_file(args.scenario) if args.scenario else None
    except (OSError, ValueError) as error:
        print(f"cerebelum-emulator: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    emulator = CoreEmulator(
        port=args.port,
        http_port=args.http_port,
        db_path=args.db,
        step_seconds=args.step_seconds,
        demo=args.demo,
        host=args.host,
        scenario_data=scenario,
        rate_limit=args.rate_limit,
    )
    try:
        emulator.start()
    except (RuntimeError, ValueError, TypeError) as error:
        print(f"cerebelum-emulator: {error}", file=sys.stderr)
        return 1
    try:
        rest = f" (REST {emulator.http_url})" if emulator.http_url is not None else ""
        print(f"Cerebelum Core emulator listening on {emulator.address}{rest}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cerebelum-emulator`` and ``python -m cerebelum_provider.emulator``."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
