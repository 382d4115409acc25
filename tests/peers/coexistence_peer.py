"""Load the published cerebelum-sdk and our client into one interpreter, in a given order, and
use both against one Core emulator in that interpreter; print what each read as JSON.

    python tests/peers/coexistence_peer.py sdk-first|ours-first

Run in a fresh interpreter: protobuf's default descriptor pool is process-wide, so the import
order only means something in a process that has imported neither yet. Each client starts one
execution and all three readers (our blocking and asyncio clients, the SDK's client) read both.
Used by tests/client/test_sdk_coexistence.py.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from typing import Any

from peer_shape import peer_shape  # this script's folder is on sys.path; imports neither client

ORDERS = {
    "sdk-first": ("cerebelum", "cerebelum_provider.client"),
    "ours-first": ("cerebelum_provider.client", "cerebelum"),
}
WORKFLOW = "orders"
STEPS = ["validate", "charge", "ship"]
OUR_INPUTS = {"n": 123, "items": [1, {"sku": "x"}], "ratio": 0.25}
SDK_INPUTS = {"customer": "c-9", "express": True}


def loaded_first() -> list[str]:
    """Which of the two protobuf modules this process loaded, oldest first."""
    ours, theirs = "cerebelum_provider.proto.worker_service_pb2", "cerebelum.proto.worker_service_pb2"
    return [name for name in sys.modules if name in (ours, theirs)]


def pools() -> dict[str, bool]:
    """Whether each side's generated file is in protobuf's default pool."""
    from google.protobuf import descriptor_pool

    from cerebelum.proto import worker_service_pb2 as theirs
    from cerebelum_provider.proto import worker_service_pb2 as ours

    default = descriptor_pool.Default()
    return {
        "sdk_in_default_pool": theirs.DESCRIPTOR.pool is default,
        "ours_in_default_pool": ours.DESCRIPTOR.pool is default,
    }


async def read_with_all_three(address: str, execution_ids: list[str]) -> dict[str, Any]:
    from cerebelum import ExecutionClient as SdkClient
    from cerebelum_provider.client import ExecutionClient, SyncExecutionClient

    with SyncExecutionClient(address) as client:
        ours_sync = [peer_shape(client.get_execution_status(i)) for i in execution_ids]
    async with ExecutionClient(address) as client:
        ours_async = [peer_shape(await client.get_execution_status(i)) for i in execution_ids]
        our_listing, our_total, _ = await client.list_executions(workflow_name=WORKFLOW)
    sdk = SdkClient(core_url=address)
    try:
        theirs = [peer_shape(await sdk.get_execution_status(i)) for i in execution_ids]
        sdk_listing, sdk_total, _ = await sdk.list_executions(workflow_name=WORKFLOW)
    finally:
        sdk.close()
    return {
        "ours_sync": ours_sync,
        "ours_async": ours_async,
        "sdk": theirs,
        "listed_ids": {
            "ours": sorted(e.execution_id for e in our_listing),
            "sdk": sorted(e.execution_id for e in sdk_listing),
        },
        "listed_totals": {"ours": our_total, "sdk": sdk_total},
    }


async def run(order: str) -> dict[str, Any]:
    for module in ORDERS[order]:
        importlib.import_module(module)
    first = loaded_first()

    from cerebelum import DistributedExecutor
    from cerebelum_provider.client import SyncExecutionClient
    from cerebelum_provider.emulator import CoreEmulator

    with CoreEmulator() as core:
        core.define_workflow(WORKFLOW, STEPS)
        with SyncExecutionClient(core.address) as client:
            ours_started = client.execute_workflow(WORKFLOW, OUR_INPUTS).execution_id
        executor = DistributedExecutor(core_url=core.address)
        try:
            sdk_started = (await executor.execute(WORKFLOW, SDK_INPUTS)).execution_id
        finally:
            executor.close()
        core.run_until_settled(ours_started)
        core.advance(steps=1, execution_id=sdk_started)
        reads = await read_with_all_three(core.address, [ours_started, sdk_started])
    return {
        "loaded_first": first,
        "pools": pools(),
        "started": [ours_started, sdk_started],
        "sent_inputs": [OUR_INPUTS, SDK_INPUTS],
        **reads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("order", choices=sorted(ORDERS))
    json.dump(asyncio.run(run(parser.parse_args().order)), sys.stdout)


if __name__ == "__main__":
    main()
