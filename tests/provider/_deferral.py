"""Helpers that make a task defer deterministically in ``dag.test()`` against a manual-clock emulator."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def completed_once_the_trigger_polls(
    core: Any, pick_execution_id: Callable[[], str], status_reads: int
) -> Iterator[None]:
    """Complete an execution once Core has answered ``status_reads`` status queries.

    The task checks the execution once before deferring; the next read is the trigger's. So
    with the execution left RUNNING until then, the task deterministically defers, and the
    trigger (run in-process by ``dag.test()``) sees it complete.
    """
    stop = threading.Event()

    def complete() -> None:
        while not stop.wait(0.02):
            if core.call_counts().get("GetExecutionStatus", 0) >= status_reads:
                core.complete(pick_execution_id())
                return

    helper = threading.Thread(target=complete, daemon=True)
    helper.start()
    try:
        yield
    finally:
        stop.set()
        helper.join()


def deferred(caplog: Any) -> bool:
    """True when the last dag.test() ran a trigger (the task deferred)."""
    return "running trigger in line" in caplog.text
