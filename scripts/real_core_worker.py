"""Run the release's SDK worker (``examples/sdk_worker.py``) with every step taking a little time.

The real Core (be56c90) loses a step's result that comes back within about a millisecond of Core
handing the step out: its log says "No process awaiting task ..." and the execution's engine then
waits minutes for a result that already came. Meanwhile the request that started the execution
gets no answer, and every REST status read stalls (Core asks each of its engines in turn, 5 s
each). The release's test steps return at once, so the harness met this race now and then (a whole
test module of read timeouts); real steps take longer than a millisecond. So each step here sleeps
``CEREBELUM_TEST_STEP_SECONDS`` (default 0.05) before it runs, and the worker is otherwise the
release's, unchanged.

    python scripts/real_core_worker.py <release>/examples/sdk_worker.py HOST:GRPC_PORT
"""

from __future__ import annotations

import asyncio
import functools
import os
import runpy
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from cerebelum import Worker

STEP_SECONDS = float(os.environ.get("CEREBELUM_TEST_STEP_SECONDS", "0.05"))

Step = Callable[..., Awaitable[Any]]


def _taking_time(step: Step) -> Step:
    @functools.wraps(step)
    async def slower(ctx: Any, **inputs: Any) -> Any:
        await asyncio.sleep(STEP_SECONDS)
        return await step(ctx, **inputs)

    return slower


def main() -> None:
    script, *arguments = sys.argv[1:]
    register_step = Worker.register_step

    def register_slower_step(self: Worker, name: str, function: Step) -> None:
        register_step(self, name, _taking_time(function))

    Worker.register_step = register_slower_step  # type: ignore[method-assign]
    sys.argv = [script, *arguments]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
