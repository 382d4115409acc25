"""Ask a Core through the published cerebelum-sdk client and print the answers as JSON.

Run as a subprocess only: cerebelum-sdk registers the same protobuf symbols as our generated
code, so the two cannot live in one process. Used by tests/client/test_sdk_cross_check.py.

    python tests/peers/sdk_peer.py ADDRESS get ID [ID...]
    python tests/peers/sdk_peer.py ADDRESS list [--workflow W] [--status NAME] [--limit N] [--offset N]
    python tests/peers/sdk_peer.py ADDRESS resume ID

Datetimes are printed as epoch seconds: the SDK returns naive local-time datetimes, and
``.timestamp()`` reads a naive datetime as local time, which gives back the instant Core sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from cerebelum import ExecutionClient
from cerebelum.execution_client import ExecutionState


def _epoch(moment: Any) -> float | None:
    return moment.timestamp() if moment is not None else None


def _status(status: Any) -> dict[str, Any]:
    return {
        "execution_id": status.execution_id,
        "workflow_name": status.workflow_name,
        "status": status.status.value,
        "started_at": _epoch(status.started_at),
        "completed_at": _epoch(status.completed_at),
        "current_step_index": status.current_step_index,
        "total_steps": status.total_steps,
        "current_step_name": status.current_step_name,
        "progress_percentage": status.progress_percentage,
        "completed_steps": [
            {"step_name": step.step_name, "step_index": step.step_index, "status": step.status}
            for step in status.completed_steps
        ],
        "inputs": status.inputs,
        "step_outputs": status.step_outputs,
        "error": status.error,
        "sleep_info": None
        if status.sleep_info is None
        else {"duration_ms": status.sleep_info.duration_ms, "data": status.sleep_info.data},
        "approval_info": None
        if status.approval_info is None
        else {
            "approval_type": status.approval_info.approval_type,
            "timeout_ms": status.approval_info.timeout_ms,
            "data": status.approval_info.data,
        },
    }


async def _run(args: argparse.Namespace) -> Any:
    client = ExecutionClient(core_url=args.address)
    try:
        if args.command == "get":
            return [_status(await client.get_execution_status(execution_id)) for execution_id in args.ids]
        if args.command == "list":
            status = ExecutionState[args.status] if args.status else None
            executions, total, has_more = await client.list_executions(
                workflow_name=args.workflow, status=status, limit=args.limit, offset=args.offset
            )
            return {
                "executions": [_status(e) for e in executions],
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
