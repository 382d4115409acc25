"""Ask a Core through the published cerebelum-sdk client; answers in the shape of peer_shape.py.

Importable (tests/client/test_sdk_cross_check.py calls the coroutines in its own process: the
SDK and our generated proto share an interpreter since our proto has its own descriptor pool)
and runnable, printing the answers as JSON (tests/emulator/test_sdk_demo.py):

    python tests/peers/sdk_peer.py ADDRESS get ID [ID...]
    python tests/peers/sdk_peer.py ADDRESS list [--workflow W] [--status NAME] [--limit N] [--offset N]
    python tests/peers/sdk_peer.py ADDRESS resume ID

Statuses are peer shapes (instants as epoch seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from cerebelum import ExecutionClient
from cerebelum.execution_client import ExecutionState

if __package__:
    from tests.peers.peer_shape import peer_shape
else:  # run as a script: its folder is on sys.path
    from peer_shape import peer_shape


async def sdk_statuses(address: str, execution_ids: list[str]) -> list[dict[str, Any]]:
    """The SDK's status of each execution, in order (an unknown id is a status, not an error)."""
    client = ExecutionClient(core_url=address)
    try:
        return [peer_shape(await client.get_execution_status(execution_id)) for execution_id in execution_ids]
    finally:
        client.close()


async def sdk_listing(
    address: str, workflow: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
) -> dict[str, Any]:
    """The SDK's listing: ``{"executions": [...], "total_count": N, "has_more": bool}``."""
    client = ExecutionClient(core_url=address)
    try:
        executions, total, has_more = await client.list_executions(
            workflow_name=workflow,
            status=ExecutionState[status] if status else None,
            limit=limit,
            offset=offset,
        )
    finally:
        client.close()
    return {"executions": [peer_shape(e) for e in executions], "total_count": total, "has_more": has_more}


async def sdk_resume(address: str, execution_id: str) -> str:
    """The SDK's answer to resuming ``execution_id``."""
    client = ExecutionClient(core_url=address)
    try:
        return await client.resume_execution(execution_id)
    finally:
        client.close()


async def _run(args: argparse.Namespace) -> Any:
    if args.command == "get":
        return await sdk_statuses(args.address, args.ids)
    if args.command == "list":
        return await sdk_listing(args.address, args.workflow, args.status, args.limit, args.offset)
    return {"answer": await sdk_resume(args.address, args.ids[0])}


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
