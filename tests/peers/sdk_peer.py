"""Ask a Core through the published cerebelum-sdk client and print the answers as JSON.

Run as a subprocess only: cerebelum-sdk registers the same protobuf symbols as our generated
code, so the two cannot live in one process. Used by tests/client/test_sdk_cross_check.py.

    python tests/peers/sdk_peer.py ADDRESS get ID [ID...]
    python tests/peers/sdk_peer.py ADDRESS list [--workflow W] [--status NAME] [--limit N] [--offset N]
    python tests/peers/sdk_peer.py ADDRESS resume ID

Statuses are printed in the shape of tests/peers/peer_shape.py (instants as epoch seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from cerebelum import ExecutionClient
from cerebelum.execution_client import ExecutionState
from peer_shape import peer_shape  # this script's folder is on sys.path


async def _run(args: argparse.Namespace) -> Any:
    client = ExecutionClient(core_url=args.address)
    try:
        if args.command == "get":
            return [peer_shape(await client.get_execution_status(execution_id)) for execution_id in args.ids]
        if args.command == "list":
            status = ExecutionState[args.status] if args.status else None
            executions, total, has_more = await client.list_executions(
                workflow_name=args.workflow, status=status, limit=args.limit, offset=args.offset
            )
            return {
                "executions": [peer_shape(e) for e in executions],
                "total_count": total,
                "has_more": has_more,
            }
        return {"answer": await client.resume_execution(args.ids[0])}
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address")
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("get")
    get.add_argument("ids", nargs="+")
    listing = commands.add_parser("list")
    listing.add_argument("--workflow")
    listing.add_argument("--status")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--offset", type=int, default=0)
    resume = commands.add_parser("resume")
    resume.add_argument("ids", nargs=1)
    json.dump(asyncio.run(_run(parser.parse_args())), sys.stdout)


if __name__ == "__main__":
    main()
